step_spec <- function(kind, targets = character(), var = "", cases = character(), condition = "") {
  t <- polyflow:::pf_msg("common.Transition", kind = kind, foreach_var = var, condition = condition)
  if (length(targets)) t$targets <- targets
  if (length(cases)) {
    t$switch_cases <- lapply(names(cases), function(k) {
      polyflow:::pf_msg("common.Transition.SwitchCasesEntry", key = k, value = cases[[k]])
    })
  }
  polyflow:::pf_msg("common.StepSpec", name = "s", transition = t)
}

self_with <- function(store, values) {
  self <- polyflow:::new_polyflow_self("F", "s", list(), store)
  for (name in names(values)) self[[name]] <- values[[name]]
  self
}

test_that("linear and branch transitions go to their targets", {
  store <- local_store()
  taken <- polyflow:::pf_take_transition(self_with(store, list()), step_spec(2L, c("a", "b")), 100L)
  expect_equal(taken$next_steps, c("a", "b"))
  taken <- polyflow:::pf_take_transition(self_with(store, list()), step_spec(0L), 100L)
  expect_length(taken$next_steps, 0L)
})

test_that("a foreach counts its items and describes them", {
  store <- local_store()
  self <- self_with(store, list(xs = list(1L, "two", list(3)), df = data.frame(a = 1:4)))
  taken <- polyflow:::pf_take_transition(self, step_spec(3L, "each", "xs"), 100L)
  expect_equal(taken$num_splits, 3L)
  expect_equal(taken$value_reprs[1:2], c("1", "'two'"))
  expect_equal(polyflow:::pf_take_transition(self, step_spec(3L, "each", "df"), 100L)$num_splits, 4L)
  expect_error(polyflow:::pf_take_transition(self, step_spec(3L, "each", "xs"), 2L),
               "more than the maximum of 2", class = "polyflow_error_task_failed")
  expect_error(polyflow:::pf_take_transition(self, step_spec(3L, "each", "nope"), 10L),
               "is not set", class = "polyflow_error_invalid_next")
  empty <- self_with(store, list(xs = list()))
  expect_error(polyflow:::pf_take_transition(empty, step_spec(3L, "each", "xs"), 10L), "is empty")
})

test_that("a switch picks the case named by the condition's value", {
  store <- local_store()
  spec <- step_spec(4L, cases = c(low = "a", high = "b", "TRUE" = "c"), condition = "c")
  expect_equal(polyflow:::pf_take_transition(self_with(store, list(c = "high")), spec, 10L)$next_steps, "b")
  expect_equal(polyflow:::pf_take_transition(self_with(store, list(c = TRUE)), spec, 10L)$next_steps, "c")
  expect_error(polyflow:::pf_take_transition(self_with(store, list(c = "mid")), spec, 10L),
               "matches none of the switch cases")
})

test_that("failures are captured with the user's frames and a typed exception", {
  inner <- function() stop(errorCondition("boom", class = "ValueError"))
  step <- function(self) inner()
  result <- polyflow:::pf_capture(polyflow:::pf_call_step(step, NULL, NULL))
  expect_false(result$ok)
  expect_equal(result$exception$type, "ValueError")
  expect_equal(result$exception$message, "boom")
  expect_equal(result$exception$line, "ValueError: boom")
  expect_match(result$exception$traceback, "inner\\(\\)")
  sdk <- polyflow:::pf_capture(pf_throw("unhandled_in_merge_artifacts", "clash"))
  expect_equal(sdk$exception$type, "polyflow::UnhandledInMergeArtifactsError")
  plain <- polyflow:::pf_capture(stop("plain"))
  expect_equal(plain$exception$line, "Error: plain")
  expect_equal(polyflow:::pf_capture(1 + 1), list(ok = TRUE, value = 2))
})

test_that("the task context is readable inside a step", {
  state <- polyflow:::pf_state
  withr::defer(state$task_context <- NULL)
  state$task_context <- list(run_id = "3", pathspec = "F/3/s/1")
  expect_equal(pf_current("run_id"), "3")
  expect_equal(pf_current()$pathspec, "F/3/s/1")
  state$task_context <- NULL
  expect_null(pf_current("run_id"))
})

test_that("an outcome becomes a TaskOutcome message", {
  result <- list(succeeded = FALSE, failure_message = "ValueError: boom",
                 exception = list(type = "ValueError", message = "boom", traceback = "tb"),
                 artifacts = list(x = list(name = "x", digest = "sha256:00", encoding = "json",
                                           size = 2, type_name = "integer")),
                 next_steps = character(), num_splits = 0L, value_reprs = character())
  outcome <- polyflow:::pf_outcome_proto(result)
  expect_false(outcome$succeeded)
  expect_equal(outcome$exception$type, "ValueError")
  expect_equal(outcome$artifacts[[1L]]$name, "x")
  expect_false(outcome$blobs_unsynced)
  expect_true(polyflow:::pf_outcome_proto(result, unsynced = TRUE)$blobs_unsynced)
  expect_equal(polyflow:::pf_short_repr(strrep("a", 40)), paste0("'", strrep("a", 26), "..."))
})

test_that("a step whose function is missing fails the task, not the worker", {
  store_root <- withr::local_tempdir()
  spec <- polyflow:::pf_msg("runtime.TaskSpec", flow_name = "F", run_id = "1", step_name = "s",
                            task_id = "1", code_path = file.path(store_root, "none.R"))
  spec$graph$steps <- list(step_spec(0L))
  spec$store$kind <- "local"
  spec$store$root <- store_root
  err <- capture.output(result <- polyflow:::pf_execute_task(spec), type = "message")
  expect_false(result$succeeded)
  expect_match(err, "is not an existing file", all = FALSE)
  err <- capture.output(
    missing <- polyflow:::pf_execute_task(polyflow:::pf_msg("runtime.TaskSpec", step_name = "x")),
    type = "message"
  )
  expect_match(missing$failure_message, "not in the flow's graph")
})

test_that("step decorators are read from the graph", {
  step <- step_spec(1L, "end")
  step$decorators <- list(polyflow:::pf_decorator_proto(pf_decorator("catch", var = "err")),
                          polyflow:::pf_decorator_proto(pf_decorator("timeout", minutes = 1L,
                                                                     seconds = 5L)))
  decorators <- polyflow:::pf_step_decorators(step)
  expect_equal(decorators$catch$var, "err")
  expect_equal(polyflow:::pf_timeout_seconds(decorators$timeout), 65)
  expect_equal(polyflow:::pf_timeout_seconds(NULL), 0)
})

test_that("@timeout stops R code over the limit, even code R cannot interrupt", {
  expect_equal(polyflow:::pf_with_timeout(0, "s", 1 + 1), 2)
  expect_equal(polyflow:::pf_with_timeout(5, "s", 1 + 1), 2)
  expect_error(polyflow:::pf_with_timeout(0.2, "s", repeat {}), "timed out",
               class = "polyflow_error_step_timeout")
  expect_error(polyflow:::pf_with_timeout(0.1, "s", Sys.sleep(0.3)), "over its @timeout")
})

test_that("@catch stores the failure and takes the static transition on the last attempt", {
  store <- local_store()
  step <- step_spec(1L, "next_one")
  spec <- list(attempt = 1L, max_user_code_retries = 1L, previous_failure_message = "")
  failed <- polyflow:::pf_capture(stop(errorCondition("bad", class = "ValueError")))
  self <- self_with(store, list())
  err <- capture.output(
    caught <- polyflow:::pf_apply_catch(failed, list(var = "problem"), self, step, spec, FALSE),
    type = "message"
  )
  expect_true(caught$ok)
  expect_equal(caught$value$next_steps, "next_one")
  expect_equal(self$problem$type, "ValueError")
  expect_match(err, "@catch caught ValueError in step 's'", all = FALSE)
  early <- polyflow:::pf_apply_catch(failed, list(var = "problem"), self, step,
                                     list(attempt = 0L, max_user_code_retries = 1L), FALSE)
  expect_false(early$ok)
  fine <- polyflow:::pf_apply_catch(list(ok = TRUE, value = 1), list(var = "problem"), self,
                                    step, spec, FALSE)
  expect_true(fine$ok)
  expect_null(self$problem)
})
