make_self <- function(store, refs = list(), readonly = character(), stack = list()) {
  polyflow:::new_polyflow_self("F", "s", refs, store, readonly, stack)
}

test_that("artifacts load lazily and set values are kept", {
  store <- local_store()
  ref <- polyflow:::pf_store_value(store, "x", list(1L, 2L))
  self <- make_self(store, list(x = ref))
  expect_equal(names(self), "x")
  expect_equal(self$x, list(1L, 2L))
  self$y <- NULL
  self[["z"]] <- 3
  expect_null(self$y)
  expect_equal(self[["z"]], 3)
  expect_equal(names(self), c("x", "y", "z"))
  expect_error(self$missing, "has no artifact 'missing'", class = "polyflow_error_not_found")
  expect_output(print(self), "<self of step s of F: x, y, z>")
})

test_that("parameters, constants and reserved names are read-only", {
  store <- local_store()
  self <- make_self(store, readonly = "alpha")
  expect_error(self$alpha <- 1, "read-only")
  expect_error(self$input <- 1, "reserved")
  expect_error(self$`_x` <- 1, "reserved")
})

test_that("input, index and the foreach stack come from the frames", {
  store <- local_store()
  refs <- list(xs = polyflow:::pf_store_value(store, "xs", list("a", "b", "c")),
               ys = polyflow:::pf_store_value(store, "ys", data.frame(v = 1:2)))
  stack <- list(list(step = "s0", var = "ys", index = 1L, num_splits = 2L),
                list(step = "s1", var = "xs", index = 2L, num_splits = 3L))
  self <- make_self(store, refs, stack = stack)
  expect_equal(self$input, "c")
  expect_equal(self$index, 2L)
  frames <- pf_foreach_stack(self)
  expect_equal(frames[[1L]]$value, data.frame(v = 2L, row.names = 2L))
  expect_equal(frames[[2L]][c("index", "num_splits")], list(index = 2L, num_splits = 3L))
  expect_equal(self$foreach_stack(), frames)
  outside <- make_self(store)
  expect_null(outside$input)
  expect_null(outside$index)
  expect_equal(outside$name, "F")
})

test_that("persisting keeps unchanged refs and stores what was set", {
  store <- local_store()
  ref_x <- polyflow:::pf_store_value(store, "x", 1L)
  ref_y <- polyflow:::pf_store_value(store, "y", "old")
  self <- make_self(store, list(x = ref_x, y = ref_y))
  self$x <- 1L
  self$y <- "new"
  self$z <- function() 1
  refs <- polyflow:::pf_persist_self(self, function(message) stop(message))
  expect_equal(refs$x, ref_x)
  expect_false(identical(refs$y$digest, ref_y$digest))
  expect_equal(polyflow:::pf_load_ref(store, refs$y), "new")
  expect_equal(refs$z$encoding, "rds")
})
