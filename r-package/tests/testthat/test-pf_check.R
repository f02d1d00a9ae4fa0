test_that("check and show ask the core, which names the broken step", {
  skip_if_no_polyflow_python()
  local_project()
  broken <- pf_flow("BrokenFlow") |>
    pf_step("start", function(self) NULL, next_step = "nowhere") |>
    pf_step("end", function(self) NULL)
  problems <- suppressMessages(pf_check(broken))
  expect_true(length(problems) >= 1L)
  expect_true(any(vapply(problems, function(p) p$step == "start", TRUE)))
  good <- pf_flow("GoodFlow") |>
    pf_step("start", function(self) NULL, next_step = "end") |>
    pf_step("end", function(self) NULL)
  expect_length(suppressMessages(pf_check(good)), 0L)
  out <- capture.output(pf_show(good))
  expect_true("Step start (start)" %in% out)
})
