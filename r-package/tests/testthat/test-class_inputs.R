make_join <- function(store, branches) {
  views <- lapply(names(branches), function(step) {
    refs <- lapply(names(branches[[step]]), function(name) {
      polyflow:::pf_store_value(store, name, branches[[step]][[name]])
    })
    names(refs) <- names(branches[[step]])
    polyflow:::new_polyflow_input(step, paste0("F/1/", step, "/1"), refs, store)
  })
  inputs <- polyflow:::new_polyflow_inputs(views)
  self <- polyflow:::new_polyflow_self("F", "join", list(), store, inputs = inputs)
  list(self = self, inputs = inputs)
}

test_that("inputs are addressed by step, position and iteration", {
  store <- local_store()
  join <- make_join(store, list(a = list(x = 1L, s = "same"), b = list(x = 2L, s = "same")))
  inputs <- join$inputs
  expect_equal(inputs$a$x, 1L)
  expect_equal(inputs[["b"]]$x, 2L)
  expect_equal(inputs[[2]]$x, 2L)
  expect_equal(length(inputs), 2L)
  expect_equal(pf_gather(inputs, "x"), list(1L, 2L))
  expect_equal(unlist(lapply(inputs, function(i) i$x)), c(a = 1L, b = 2L))
  seen <- c()
  for (inp in inputs) seen <- c(seen, inp$x)
  expect_equal(seen, c(1L, 2L))
  expect_error(inputs$c, "no input from a step named 'c'")
  expect_error(inputs$a$nothing, "has no artifact 'nothing'")
  expect_error(inputs$a$x <- 3, "read-only")
  expect_null(inputs$a$index)
  expect_equal(names(inputs$a), c("s", "x"))
  expect_output(print(inputs), "<inputs F/1/a/1, F/1/b/1>")
})

test_that("merge_artifacts merges equal values and names set once", {
  store <- local_store()
  join <- make_join(store, list(a = list(s = "same", only_a = 1L, clash = "a", `_p` = 1L),
                                b = list(s = "same", only_b = 2L, clash = "b")))
  self <- join$self
  self$clash <- "resolved"
  pf_merge_artifacts(self, join$inputs)
  expect_equal(self$s, "same")
  expect_equal(self$only_a, 1L)
  expect_equal(self$only_b, 2L)
  expect_equal(self$clash, "resolved")
  expect_false("_p" %in% names(self))
})

test_that("merge_artifacts refuses conflicts and missing includes", {
  store <- local_store()
  join <- make_join(store, list(a = list(v = 1L, w = 1L), b = list(v = 2L, w = 1L)))
  err <- tryCatch(pf_merge_artifacts(join$self, join$inputs), error = function(e) e)
  expect_s3_class(err, "polyflow_error_unhandled_in_merge_artifacts")
  expect_equal(err$names, "v")
  expect_false("w" %in% names(join$self))
  pf_merge_artifacts(join$self, join$inputs, exclude = "v")
  expect_equal(join$self$w, 1L)
  expect_error(pf_merge_artifacts(join$self, join$inputs, include = "nope"),
               class = "polyflow_error_missing_in_merge_artifacts")
  expect_error(pf_merge_artifacts(join$self, join$inputs, include = "w", exclude = "v"),
               "not both")
  other <- polyflow:::new_polyflow_self("F", "s", list(), store)
  expect_error(pf_merge_artifacts(other, join$inputs), "only be called in a join")
  self_include <- make_join(store, list(a = list(v = 1L, w = 1L), b = list(v = 2L, w = 1L)))
  pf_merge_artifacts(self_include$self, self_include$inputs, include = "w")
  expect_equal(names(self_include$self), "w")
})
