test_that("a flow runs with Rscript and reads back through the client", {
  skip_if_no_polyflow_python()
  dir <- local_project()
  file <- file.path(dir, "counting.R")
  writeLines(c(
    "library(polyflow)",
    "flow <- pf_flow('CountingFlow') |>",
    "  pf_parameter('scale', default = 1L) |>",
    "  pf_step('start', function(self) {",
    "    self$xs <- list(1L, 2L, 3L)",
    "    cat('starting\\n')",
    "  }, next_step = 'square', foreach = 'xs') |>",
    "  pf_step('square', function(self) self$sq <- self$input^2 * self$scale,",
    "          next_step = 'join') |>",
    "  pf_step('join', function(self, inputs) {",
    "    self$total <- sum(unlist(pf_gather(inputs, 'sq')))",
    "  }, next_step = 'end') |>",
    "  pf_step('end', function(self) NULL)",
    "pf_main(flow)"
  ), file)
  result <- run_rscript(file, c("run", "--scale", "2", "--tag", "testing"))
  expect_equal(result$status, 0L, info = result$stderr)
  expect_match(result$stderr, "Workflow starting \\(run-id 1\\):")
  expect_match(result$stderr, "Done!")
  expect_match(result$stdout, "\\[CountingFlow/1/start/1\\] starting")

  expect_equal(pf_list_flows(), "CountingFlow")
  run <- pf_latest_run("CountingFlow")
  expect_true(run$successful)
  expect_true("testing" %in% pf_tags(run))
  expect_equal(pf_data(run, "total"), 28)
  expect_equal(pf_latest_successful_run("CountingFlow")$id, run$id)
  steps <- vapply(pf_list_steps(run), function(s) s$id, "")
  expect_equal(steps, c("start", "square", "join", "end"))
  tasks <- pf_list_tasks(pf_get_step(run, "square"))
  expect_equal(vapply(tasks, function(t) t$index, 0L), 0:2)
  expect_equal(vapply(tasks, function(t) pf_data(t, "sq"), 0), c(2, 8, 18))
  start <- pf_get_task(paste0(run$pathspec, "/start/1"))
  expect_match(pf_stdout(start), "starting")
  expect_equal(pf_stderr(start), "")
  artifacts <- pf_list_artifacts(start)
  expect_equal(names(artifacts), c("scale", "xs"))
  expect_equal(pf_artifact_value(artifacts$xs), list(1L, 2L, 3L))
  expect_equal(pf_add_tags(run, "reviewed"), c("reviewed", "testing"))
  expect_equal(pf_remove_tags(run, "testing"), "reviewed")

  pf_namespace("user:someone-else")
  withr::defer(pf_default_namespace())
  expect_null(pf_latest_run("CountingFlow"))
  expect_error(pf_get_run(run$pathspec), class = "polyflow_error_namespace_mismatch")
  pf_namespace(NULL)
  expect_equal(pf_get_run(run$pathspec)$id, run$id)
  expect_error(pf_get_run("CountingFlow/99"), class = "polyflow_error_not_found")

  logs <- run_rscript(file, c("logs", "1/start"))
  expect_equal(logs$status, 0L)
  expect_equal(logs$stdout, "starting")
  expect_match(logs$stderr, "Logs of task CountingFlow/1/start/1, attempt 0\nstdout:\nstderr: \\(empty\\)")
  only <- run_rscript(file, c("logs", "show", "1/square/3", "--stderr"))
  expect_equal(only$stdout, "")
  expect_match(only$stderr, "stderr: \\(empty\\)")
  none <- run_rscript(file, c("logs", "1/square/3", "--attempt", "2"))
  expect_equal(none$status, 1L)
  expect_match(none$stderr, "has no attempt 2: it made 1 attempt, numbered from 0")
  check <- run_rscript(file, "check")
  expect_equal(check$status, 0L)
  expect_match(check$stdout, "The graph looks good!")
})

test_that("a failing step fails the run with the condition's type", {
  skip_if_no_polyflow_python()
  dir <- local_project()
  file <- file.path(dir, "failing.R")
  writeLines(c(
    "library(polyflow)",
    "flow <- pf_flow('FailingFlow') |>",
    "  pf_step('start', function(self) {",
    "    self$before <- 1L",
    "    stop(errorCondition('no good', class = 'ValueError'))",
    "  }, next_step = 'end') |>",
    "  pf_step('end', function(self) NULL)",
    "pf_main(flow)"
  ), file)
  result <- run_rscript(file, "run")
  expect_equal(result$status, 1L)
  expect_match(result$stderr, "Task failed: ValueError: no good")
  expect_match(result$stderr, "Step failure: task FailingFlow/1/start/1 failed.")
  pf_namespace(NULL)
  withr::defer(pf_default_namespace())
  task <- pf_get_task("FailingFlow/1/start/1")
  expect_equal(task$exception$type, "ValueError")
  expect_equal(pf_data(task, "before"), 1L)
})
