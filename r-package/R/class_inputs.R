# A join's `inputs`: one read-only view per parent task, in order (foreach
# index, or the split's target order), addressable by the parent's step name
# (`inputs$train$score`).

new_polyflow_input <- function(step, pathspec, refs, store, foreach_stack = list()) {
  state <- new.env(parent = emptyenv())
  state$step <- step
  state$pathspec <- pathspec
  state$refs <- refs
  state$values <- new.env(parent = emptyenv())
  state$store <- store
  state$foreach_stack <- foreach_stack
  state$flow_name <- strsplit(pathspec, "/", fixed = TRUE)[[1]][[1]]
  state$step_name <- step
  view <- new.env(parent = emptyenv())
  view$.state <- state
  class(view) <- "polyflow_input"
  view
}

pf_input_state <- function(x) get(".state", envir = x, inherits = FALSE)

new_polyflow_inputs <- function(views) {
  names(views) <- vapply(views, function(v) pf_input_state(v)$step, "")
  structure(views, class = "polyflow_inputs")
}

#' A join's inputs
#'
#' A join step's second argument holds one read-only view per parent task,
#' in order: by foreach index for a join that closes a foreach, by the
#' split's target order for a join that closes a branch. `inputs$a` is the
#' input from step `a`, `inputs[[2]]` the second input; `inp$x` reads the
#' artifact `x` of an input, `inp$index` and `inp$input` its foreach position
#' and item. Iterate with `for (inp in inputs)` or `lapply(inputs, ...)`.
#'
#' @param x The inputs, or one input.
#' @param name A step name (on the inputs) or an artifact name (on an input).
#' @param i An index or step name.
#' @param ... Ignored.
#' @return The input, or the artifact's value.
#' @name polyflow-inputs
#' @family steps
#' @examples
#' join <- function(self, inputs) {
#'   self$scores <- lapply(inputs, function(inp) inp$score)
#'   self$best <- inputs$train$score
#' }
NULL

#' @rdname polyflow-inputs
#' @export
`$.polyflow_inputs` <- function(x, name) {
  views <- unclass(x)
  found <- which(names(views) == name)
  if (!length(found)) {
    pf_throw("not_found", sprintf("The join has no input from a step named '%s'", name))
  }
  views[[found[[1L]]]]
}

#' @rdname polyflow-inputs
#' @export
`[[.polyflow_inputs` <- function(x, i, ...) {
  if (is.character(i)) {
    return(`$.polyflow_inputs`(x, i))
  }
  unclass(x)[[i]]
}

#' @export
print.polyflow_inputs <- function(x, ...) {
  paths <- vapply(unclass(x), function(v) pf_input_state(v)$pathspec, "")
  cat("<inputs ", paste(paths, collapse = ", "), ">\n", sep = "")
  invisible(x)
}

#' @rdname polyflow-inputs
#' @export
`$.polyflow_input` <- function(x, name) {
  state <- pf_input_state(x)
  switch(name,
    index = {
      stack <- state$foreach_stack
      if (length(stack)) stack[[length(stack)]]$index else NULL
    },
    input = {
      stack <- state$foreach_stack
      if (length(stack)) pf_frame_value(state, stack[[length(stack)]]) else NULL
    },
    foreach_stack = function() pf_foreach_stack(x),
    {
      if (!pf_self_has(state, name)) {
        pf_throw("not_found", sprintf("Step '%s' (%s) has no artifact '%s'", state$step,
                                      state$pathspec, name), artifact = name)
      }
      pf_self_get(state, name)
    }
  )
}

#' @rdname polyflow-inputs
#' @export
`[[.polyflow_input` <- function(x, i, ...) `$.polyflow_input`(x, i)

#' @rdname polyflow-inputs
#' @param value Not allowed: inputs are read-only.
#' @export
`$<-.polyflow_input` <- function(x, name, value) {
  pf_throw("invalid_argument", sprintf(
    "Cannot set '%s': the inputs of a join are read-only; set artifacts on self", name
  ))
}

#' @rdname polyflow-inputs
#' @export
names.polyflow_input <- function(x) sort(names(pf_input_state(x)$refs))

#' @export
print.polyflow_input <- function(x, ...) {
  cat("<input ", pf_input_state(x)$pathspec, ">\n", sep = "")
  invisible(x)
}

#' Gather one artifact from every input of a join
#'
#' @param inputs A join's inputs.
#' @param name The artifact's name.
#' @return An unnamed list of the values, in input order.
#' @family steps
#' @export
#' @examples
#' join <- function(self, inputs) {
#'   self$total <- sum(unlist(pf_gather(inputs, "count")))
#' }
pf_gather <- function(inputs, name) {
  pf_assert_class(inputs, "polyflow_inputs", "inputs")
  pf_assert_string(name, "name")
  unname(lapply(unclass(inputs), function(inp) `$.polyflow_input`(inp, name)))
}

#' Copy into a join the artifacts its inputs agree on
#'
#' Only names not already set on `self` are considered. A name with different
#' values in different inputs fails with a
#' `polyflow_error_unhandled_in_merge_artifacts` condition, and nothing is
#' merged: set it on `self` first, or exclude it. Values are compared by
#' their content address and merged by reference (nothing is loaded).
#'
#' @param self The join's `self`.
#' @param inputs The join's `inputs`.
#' @param include Only these names (each must be in some input, else a
#'   `polyflow_error_missing_in_merge_artifacts` condition).
#' @param exclude Names not to merge.
#' @return `self`, invisibly.
#' @family steps
#' @export
#' @examples
#' join <- function(self, inputs) {
#'   self$score <- max(unlist(pf_gather(inputs, "score")))
#'   pf_merge_artifacts(self, inputs, exclude = "model")
#' }
pf_merge_artifacts <- function(self, inputs, include = NULL, exclude = NULL) {
  pf_assert_class(self, "polyflow_self", "self")
  state <- pf_self_state(self)
  step <- state$step_name
  if (is.null(state$inputs) || !identical(inputs, state$inputs)) {
    pf_throw("merge_artifacts", sprintf(
      "Step '%s': merge_artifacts() can only be called in a join step, with the join's inputs",
      step
    ))
  }
  if (!is.null(include) && !is.null(exclude)) {
    pf_throw("merge_artifacts", sprintf(
      "Step '%s': merge_artifacts() takes include= or exclude=, not both", step
    ))
  }
  wanted <- if (is.null(include)) NULL else unique(as.character(include))
  skip <- as.character(exclude %||% character())
  is_set <- function(name) {
    exists(name, envir = state$values, inherits = FALSE) || !is.null(state$refs[[name]])
  }
  found <- list()
  conflicts <- character()
  for (inp in unclass(inputs)) {
    input_state <- pf_input_state(inp)
    for (name in names(input_state$refs)) {
      if (startsWith(name, "_") || name %in% skip || is_set(name)) next
      if (!is.null(wanted) && !name %in% wanted) next
      ref <- input_state$refs[[name]]
      first <- found[[name]]
      if (is.null(first)) {
        found[[name]] <- ref
      } else if (!identical(first$digest, ref$digest) && !name %in% conflicts) {
        conflicts <- c(conflicts, name)
      }
    }
  }
  if (length(conflicts)) {
    pf_throw("unhandled_in_merge_artifacts", sprintf(paste0(
      "Step '%s' cannot merge artifacts with different values in different inputs: %s. ",
      "Set them on self (self$<name> <- ...) before calling merge_artifacts(), or exclude them"
    ), step, paste(conflicts, collapse = ", ")), names = conflicts)
  }
  missing <- Filter(function(n) is.null(found[[n]]) && !is_set(n), wanted %||% character())
  if (length(missing)) {
    pf_throw("missing_in_merge_artifacts", sprintf(
      "Step '%s': merge_artifacts() was asked to include %s, found in no input", step,
      paste(missing, collapse = ", ")
    ), names = missing)
  }
  for (name in names(found)) {
    state$refs[[name]] <- found[[name]]
  }
  invisible(self)
}
