test_that("pf_flow() makes an empty flow", {
  flow <- pf_flow("MyFlow", doc = "Does things.")
  expect_s3_class(flow, "polyflow_flow")
  expect_equal(flow$name, "MyFlow")
  expect_length(flow$steps, 0L)
  expect_error(pf_flow("my flow"), class = "polyflow_error_invalid_argument")
  expect_output(print(flow), "<polyflow flow MyFlow>")
})

test_that("constants are named values, unique among parameters", {
  flow <- pf_flow("F") |> pf_constant("limit", 3L)
  expect_equal(flow$constants, list(limit = 3L))
  expect_error(flow |> pf_constant("limit", 4L), "already has")
  expect_error(flow |> pf_constant("input", 4L), "reserved")
  flow <- flow |> pf_constant("nothing", NULL)
  expect_true("nothing" %in% names(flow$constants))
})

test_that("decorators encode their attributes as JSON", {
  deco <- pf_decorator("retry", times = 3L, minutes_between_retries = 0.5, tags = list("a"))
  expect_equal(deco$attributes, list(times = "3", minutes_between_retries = "0.5",
                                     tags = "[\"a\"]"))
  expect_output(print(deco), "@retry\\(times=3")
  expect_error(pf_decorator("retry", 3), "named")
  expect_error(pf_flow("F", decorators = list(1)), "pf_decorator")
  expect_length(pf_flow("F", decorators = pf_decorator("x"))$decorators, 1L)
})
