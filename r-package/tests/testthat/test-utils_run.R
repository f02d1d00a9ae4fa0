event <- function(...) {
  e <- polyflow:::pf_msg("runtime.RunEvent", sequence = 1L)
  fields <- list(...)
  for (name in names(fields)) e[[name]] <- fields[[name]]
  e
}

test_that("the follower prints events as the Python CLI does", {
  console <- polyflow:::pf_console()
  follower <- polyflow:::pf_follower(console)
  started <- polyflow:::pf_msg("runtime.TaskStartedEvent", pathspec = "F/1/s/2", attempt = 1L)
  err <- capture.output(follower$handle(event(task_started = started)), type = "message")
  expect_match(err, "\\[F/1/s/2\\] Task is starting \\(retry 1\\)\\.")
  line <- polyflow:::pf_msg("runtime.LogLineEvent", pathspec = "F/1/s/2", stream = 2L,
                            text = "ValueError: boom")
  err <- capture.output(follower$handle(event(log_line = line)), type = "message")
  expect_match(err, "ValueError: boom")
  finished <- polyflow:::pf_msg("runtime.TaskFinishedEvent", pathspec = "F/1/s/2", state = 4L,
                                failure_message = "ValueError: boom")
  finished$exception$traceback <- "ValueError: boom\n"
  err <- capture.output(follower$handle(event(task_finished = finished)), type = "message")
  expect_equal(length(err), 1L)
  expect_match(err, "Task failed: ValueError: boom$")
  expect_equal(follower$failed_tasks, "F/1/s/2")
  done <- polyflow:::pf_msg("runtime.RunFinishedEvent", state = 4L, failure_message = "x")
  follower$handle(event(run_finished = done))
  expect_true(follower$finished)
  expect_false(follower$succeeded)
})

test_that("workers get the client's environment and interpreters", {
  flow <- pf_flow("F") |>
    pf_step("start", python = pf_python("p.py", "f"), next_step = "end") |>
    pf_step("end", function(self) NULL)
  flow$source_file <- "/tmp/flow.R"
  withr::local_envvar(POLYFLOW_PYTHON = "/usr/bin/python3", MY_VAR = "1")
  env <- polyflow:::pf_worker_environment(flow)
  languages <- vapply(env$interpreters, function(i) i$language, 0L)
  expect_equal(languages, c(2L, 1L))
  expect_equal(env$code_path, "/tmp/flow.R")
  keys <- vapply(env$variables, function(e) e$key, "")
  expect_true("MY_VAR" %in% keys)
  expect_true(any(startsWith(polyflow:::pf_system_tags(), "r_version:")))
})
