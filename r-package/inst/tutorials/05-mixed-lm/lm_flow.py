"""Python prepares a data set, R fits a linear model with lm(), Python reads it back.

Run it with `python lm_flow.py run` (R and its `polyflow` package installed, and rpy2 where
the Polyflow core runs). The `fit` step is the R function `fit_lm` of fit.R: its `self$data`
is the pandas DataFrame as an R data.frame, and the named numeric vector it stores comes
back to Python as a dict of floats.
"""

import numpy as np
import pandas as pd
from polyflow import FlowSpec, step
from polyflow.r import r_step


class LinearModelFlow(FlowSpec):
    """Fit y = a + b x in R on data made in Python."""

    @step
    def start(self):
        """Make noisy points around y = 1.5 + 2 x."""
        rng = np.random.default_rng(7)
        x = np.linspace(0.0, 10.0, 50)
        self.data = pd.DataFrame({"x": x, "y": 1.5 + 2.0 * x + rng.normal(0.0, 0.5, x.size)})
        self.next(self.fit)

    @r_step(file="fit.R", function="fit_lm")
    @step
    def fit(self):
        """Fit the model in R (fit.R); this body never runs."""
        self.next(self.end)

    @step
    def end(self):
        """Read the coefficients R stored, as floats."""
        self.intercept = float(self.coefficients["(Intercept)"])
        self.slope = float(self.coefficients["x"])
        print(f"intercept {self.intercept:.3f}, slope {self.slope:.3f}, R^2 {self.r_squared:.3f}")


if __name__ == "__main__":
    LinearModelFlow()
