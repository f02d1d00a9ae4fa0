"""The `summarise` step of python_step.R, run by the Python task worker."""


def summarise(self):
    """Mean value per site; missing values (R's NA) are skipped."""
    frame = self.measurements  # a pandas DataFrame
    means = frame.groupby("site")["value"].mean()
    self.means = {site: float(value) for site, value in means.items()}
    print(self.means)
