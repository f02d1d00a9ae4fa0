# Episode 04: an R flow with a step written in Python.
#
# `summarise` is the Python function `summarise` of summarise.py: it receives the
# R data frame as a pandas DataFrame and stores a dict, which R reads back as a
# named list. The Python interpreter is POLYFLOW_PYTHON (else python3) and needs
# the `polyflow` Python package; the core converts the values (it needs rpy2).
#
#   Rscript python_step.R run

library(polyflow)

flow <- pf_flow("PythonStepFlow", doc = "R makes data, Python summarises it, R prints it.") |>
  pf_step("start", function(self) {
    self$measurements <- data.frame(
      site = c("a", "a", "b", "b", "c"), value = c(1.5, 2.5, 10, NA, 7)
    )
  }, next_step = "summarise") |>
  pf_step("summarise", python = pf_python("summarise.py", "summarise"), next_step = "end",
          doc = "Per-site means, in pandas.") |>
  pf_step("end", function(self) {
    means <- unlist(self$means)
    print(means)
    self$best_site <- names(which.max(means))
    cat("Best site:", self$best_site, "\n")
  })

pf_main(flow)
