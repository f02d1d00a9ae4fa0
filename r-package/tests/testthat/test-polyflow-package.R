test_that("loading the package prints nothing", {
  out <- system2(file.path(R.home("bin"), "Rscript"),
                 c("-e", shQuote("suppressWarnings(library(polyflow))")),
                 stdout = TRUE, stderr = TRUE,
                 env = paste0("R_LIBS=", paste(.libPaths(), collapse = .Platform$path.sep)))
  expect_length(out, 0L)
})
