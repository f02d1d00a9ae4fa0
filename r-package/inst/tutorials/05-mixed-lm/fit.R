# The `fit` step of lm_flow.py, run by the R task worker.

fit_lm <- function(self) {
  model <- lm(y ~ x, data = self$data)
  print(summary(model)$coefficients)
  self$coefficients <- coef(model)  # a named numeric vector: a dict of floats in Python
  self$r_squared <- summary(model)$r.squared
}
