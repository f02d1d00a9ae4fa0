test_that("steps record their function and transition", {
  flow <- pf_flow("F") |>
    pf_step("start", function(self) NULL, next_step = c("a", "b")) |>
    pf_step("a", function(self) NULL, next_step = "join") |>
    pf_step("b", function(self) NULL, next_step = "join") |>
    pf_step("join", function(self, inputs) NULL, next_step = "end") |>
    pf_step("end", function(self) NULL)
  expect_equal(names(flow$steps), c("start", "a", "b", "join", "end"))
  expect_true(flow$steps$join$join)
  expect_equal(flow$steps$join$num_args, 2L)
  expect_false(flow$steps$a$join)
  expect_equal(flow$steps$start$next_step, c("a", "b"))
  expect_equal(flow$steps$a$language, "r")
})

test_that("foreach and switch transitions are declared", {
  flow <- pf_flow("F") |>
    pf_step("start", function(self) NULL, next_step = "body", foreach = "xs") |>
    pf_step("body", function(self) NULL, switch = c(hi = "high", lo = "low"), condition = "c")
  expect_equal(flow$steps$start$foreach, "xs")
  expect_equal(flow$steps$body$switch, c(hi = "high", lo = "low"))
  expect_output(print(flow), "switch on self\\$c")
})

test_that("bad step declarations fail at once", {
  flow <- pf_flow("F") |> pf_step("start", function(self) NULL, next_step = "end")
  expect_error(flow |> pf_step("start", function(self) NULL), "already has")
  expect_error(pf_flow("F") |> pf_step("s"), "needs a function")
  expect_error(pf_flow("F") |> pf_step("s", 1), "`fun` must be a function")
  expect_error(pf_flow("F") |> pf_step("s", function(self) NULL, next_step = c("a", "b"),
                                       foreach = "x"), "exactly one")
  expect_error(pf_flow("F") |> pf_step("s", function(self) NULL, switch = c("a", "b"),
                                       condition = "c"), "named")
  expect_error(pf_flow("F") |> pf_step("s", function(self) NULL, switch = c(a = "a"),
                                       next_step = "b", condition = "c"), "cannot be combined")
  expect_error(pf_flow("F") |> pf_step("s", function(self) NULL, condition = "c"), "needs `switch`")
})

test_that("a step can be implemented by a Python function", {
  foreign <- pf_python("prepare.py", "prepare")
  expect_s3_class(foreign, "polyflow_foreign")
  expect_output(print(foreign), "python function prepare in prepare.py")
  flow <- pf_flow("F") |> pf_step("start", python = foreign, next_step = "end")
  step <- flow$steps$start
  expect_equal(step$language, "python")
  expect_equal(step$foreign_file, "prepare.py")
  expect_equal(step$foreign_function, "prepare")
  expect_equal(step$num_args, 1L)
  joined <- pf_flow("F") |> pf_step("j", python = foreign, join = TRUE)
  expect_equal(joined$steps$j$num_args, 2L)
  expect_error(pf_flow("F") |> pf_step("s", function(self) NULL, python = foreign), "not both")
  expect_error(pf_python("x.py", "not a name"), class = "polyflow_error_invalid_argument")
})
