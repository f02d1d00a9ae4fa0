test_that("timestamps have milliseconds", {
  expect_match(polyflow:::pf_timestamp(), "^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\.\\d{3}$")
})

test_that("framework lines go to stderr, task stdout to stdout, quiet keeps task output", {
  console <- polyflow:::pf_console(quiet = FALSE)
  expect_match(capture.output(console$info("hello"), type = "message"), "^hello$")
  err <- capture.output(console$task("F/1/s/1", "Task is starting."), type = "message")
  expect_match(err, "\\[F/1/s/1\\] Task is starting\\.$")
  out <- capture.output(console$log("F/1/s/1", "printed", stderr = FALSE))
  expect_match(out, "\\[F/1/s/1\\] printed$")
  quiet <- polyflow:::pf_console(quiet = TRUE)
  expect_length(capture.output(quiet$event("Done!"), type = "message"), 0L)
  expect_length(capture.output(quiet$error("bad"), type = "message"), 1L)
})
