test_that("the default namespace is the user's, or the task's", {
  withr::local_envvar(POLYFLOW_NAMESPACE = NA, POLYFLOW_USER = "ada")
  withr::defer(pf_default_namespace())
  expect_equal(pf_default_namespace(), "user:ada")
  withr::local_envvar(POLYFLOW_NAMESPACE = "")
  expect_null(pf_default_namespace())
  withr::local_envvar(POLYFLOW_NAMESPACE = "team:x")
  expect_equal(pf_default_namespace(), "team:x")
})

test_that("pf_namespace() switches, NULL meaning global", {
  withr::local_envvar(POLYFLOW_NAMESPACE = NA, POLYFLOW_USER = "ada")
  withr::defer(pf_default_namespace())
  pf_namespace(NULL)
  expect_null(pf_get_namespace())
  pf_namespace("user:bob")
  expect_equal(pf_get_namespace(), "user:bob")
  expect_error(pf_namespace(""), class = "polyflow_error_invalid_argument")
})
