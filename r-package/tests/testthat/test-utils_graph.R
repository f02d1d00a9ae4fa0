graph_flow <- function() {
  pf_flow("GraphFlow", doc = "A graph.") |>
    pf_parameter("alpha", default = 0.5, help = "Rate.") |>
    pf_constant("limit", 3L) |>
    pf_step("start", function(self) NULL, next_step = "each", foreach = "xs",
            decorators = list(pf_decorator("retry", times = 2L))) |>
    pf_step("each", function(self) NULL, switch = c(a = "left", b = "right"),
            condition = "c") |>
    pf_step("left", function(self) NULL, next_step = "join") |>
    pf_step("right", python = pf_python("right.py", "right"), next_step = "join") |>
    pf_step("join", function(self, inputs) NULL, next_step = "end", doc = "Joins.") |>
    pf_step("end", function(self) NULL)
}

test_that("a flow becomes a FlowGraph message", {
  graph <- polyflow:::pf_graph_proto(graph_flow())
  expect_equal(graph$flow_name, "GraphFlow")
  expect_equal(graph$language, 2L)
  expect_equal(graph$constants, "limit")
  expect_equal(graph$parameters[[1L]]$type, 3L)
  expect_equal(graph$parameters[[1L]]$default_json, "0.5")
  steps <- graph$steps
  expect_equal(vapply(steps, function(s) s$name, ""),
               c("start", "each", "left", "right", "join", "end"))
  expect_equal(steps[[1L]]$transition$kind, 3L)
  expect_equal(steps[[1L]]$transition$foreach_var, "xs")
  expect_equal(steps[[1L]]$decorators[[1L]]$name, "retry")
  expect_equal(steps[[2L]]$transition$kind, 4L)
  cases <- steps[[2L]]$transition$switch_cases
  expect_equal(vapply(cases, function(e) e$key, ""), c("a", "b"))
  expect_equal(steps[[3L]]$transition$kind, 1L)
  expect_equal(steps[[4L]]$language, 1L)
  expect_equal(steps[[4L]]$foreign_function, "right")
  expect_true(steps[[5L]]$is_join)
  expect_equal(steps[[6L]]$transition$kind, 0L)
})

test_that("--with decorators are added to steps that lack them", {
  graph <- polyflow:::pf_graph_proto(graph_flow(), list(pf_decorator("retry", times = 5L),
                                                        pf_decorator("timeout", seconds = 9L)))
  first <- graph$steps[[1L]]$decorators
  expect_equal(vapply(first, function(d) d$name, ""), c("retry", "timeout"))
  expect_equal(first[[1L]]$attributes[[1L]]$value, "2")
  expect_length(graph$steps[[3L]]$decorators, 2L)
})

test_that("step lines are found in the flow's file", {
  file <- withr::local_tempfile(fileext = ".R")
  writeLines(c("library(polyflow)", "flow <- pf_flow('F') |>",
               "  pf_step('start', function(self) NULL, next_step = 'end') |>",
               "  pf_step(name = \"end\", function(self) NULL)"), file)
  lines <- polyflow:::pf_step_lines(file)
  expect_equal(lines[["start"]], 3L)
  expect_equal(lines[["end"]], 4L)
  expect_length(polyflow:::pf_step_lines(""), 0L)
})

test_that("problems format as file:line: step 'name': message", {
  problem <- list(rule = "R", message = "Bad.", step = "s", file = "f.R", line = 3L)
  expect_equal(polyflow:::pf_format_problem(problem), "f.R:3: step 's': Bad.")
  problem$file <- ""
  problem$line <- 0L
  problem$step <- ""
  expect_equal(polyflow:::pf_format_problem(problem, "flow.R"), "flow.R: Bad.")
})

test_that("show lists steps with kinds, decorators and edges", {
  graph <- polyflow:::pf_graph_proto(graph_flow())
  graph$steps[[5L]]$kind <- 5L
  text <- polyflow:::pf_show_text(graph)
  expect_match(text, "^A graph.\n\nStep start\n    decorators: @retry\\(times=2\\)\n")
  expect_match(text, "=> each \\(foreach over self\\$xs\\)")
  expect_match(text, "=> \\{'a': left, 'b': right\\} \\(switch on self\\$c\\)")
  expect_match(text, "Step join \\(join\\)\n    Joins.\n    => end")
  expect_match(text, "python: right in right.py")
})
