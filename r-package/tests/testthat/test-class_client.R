test_that("resource names and pathspecs convert both ways", {
  expect_equal(polyflow:::pf_resource_name("F/3/start/1"), "flows/F/runs/3/steps/start/tasks/1")
  expect_equal(polyflow:::pf_pathspec_of("flows/F/runs/3/steps/start"), "F/3/start")
})

test_that("metadata messages become client objects", {
  run <- polyflow:::pf_msg("metadata.Run", name = "flows/F/runs/3", flow_id = "F", run_id = "3",
                           state = 3L, end_task = "flows/F/runs/3/steps/end/tasks/9")
  run$tags <- c("a", "b")
  object <- polyflow:::pf_as_run(run)
  expect_s3_class(object, "polyflow_run")
  expect_true(object$successful)
  expect_true(object$finished)
  expect_equal(object$end_task, "F/3/end/9")
  expect_output(print(object), "<run F/3: succeeded, tags a, b>")

  task <- polyflow:::pf_msg("metadata.Task", name = "flows/F/runs/3/steps/s/tasks/4",
                            task_id = "4", step_name = "s", state = 4L,
                            failure_message = "ValueError: x")
  task$foreach_stack <- list(polyflow:::pf_msg("common.ForeachFrame", step = "a", var = "xs",
                                               index = 2L, num_splits = 3L))
  task$exception$type <- "ValueError"
  task$exception$message <- "x"
  object <- polyflow:::pf_as_task(task)
  expect_false(object$successful)
  expect_equal(object$index, 2L)
  expect_equal(object$exception$type, "ValueError")
  expect_output(print(object), "<task F/3/s/4: failed, index 2>")

  artifact <- polyflow:::pf_msg("metadata.Artifact", name = "flows/F/runs/3/steps/s/tasks/4/artifacts/x")
  artifact$ref$name <- "x"
  artifact$ref$encoding <- "json"
  object <- polyflow:::pf_as_artifact(artifact, "F/3/s/4")
  expect_equal(object$pathspec, "F/3/s/4/x")
  expect_equal(object$encoding, "json")
})
