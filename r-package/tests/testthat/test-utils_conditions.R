test_that("pf_throw() raises classed conditions with fields", {
  err <- tryCatch(pf_throw("not_found", c("no such ", "run"), pathspec = "F/1"),
                  error = function(e) e)
  expect_s3_class(err, "polyflow_error_not_found")
  expect_s3_class(err, "polyflow_error")
  expect_equal(conditionMessage(err), "no such run")
  expect_equal(err$pathspec, "F/1")
  expect_equal(err$type, "NotFoundError")
})

test_that("SDK errors carry the type name other languages use", {
  err <- tryCatch(pf_throw("unhandled_in_merge_artifacts", "x"), error = function(e) e)
  expect_equal(err$type, "UnhandledInMergeArtifactsError")
  err <- tryCatch(pf_throw("some_new_kind", "x"), error = function(e) e)
  expect_equal(err$type, "PolyflowError")
})

test_that("the pf_throw_*() helpers fix the kind", {
  expect_error(pf_throw_invalid_argument("bad"), class = "polyflow_error_invalid_argument")
  expect_error(pf_throw_not_found("gone"), class = "polyflow_error_not_found")
  expect_error(pf_throw_unavailable("down"), class = "polyflow_error_unavailable")
  err <- tryCatch(pf_throw_graph("broken", problems = list(1)), error = function(e) e)
  expect_equal(err$problems, list(1))
  err <- tryCatch(pf_throw_parameter("bad", parameter = "alpha"), error = function(e) e)
  expect_s3_class(err, "polyflow_error_parameter")
  expect_equal(err$parameter, "alpha")
})

test_that("pf_assert_*() accept good values and name the argument of bad ones", {
  expect_invisible(pf_assert_string("x", "name"))
  expect_error(pf_assert_string(c("a", "b"), "name"), "`name`",
               class = "polyflow_error_invalid_argument")
  expect_error(pf_assert_string("", "name"), class = "polyflow_error_invalid_argument")
  expect_silent(pf_assert_string("", "doc", allow_empty = TRUE))
  expect_error(pf_assert_flag(NA, "start"), "`start`")
  expect_error(pf_assert_function(1, "fun"), "`fun` must be a function")
  expect_error(pf_assert_name("9lives", "name"), "letters, digits")
  expect_error(pf_assert_class(1, "polyflow_flow", "flow"), "polyflow_flow")
  expect_error(pf_assert_count(0, "n"), "at least 1")
  expect_silent(pf_assert_count(3L, "n"))
})
