# `self` inside a step: the task's artifacts, loaded lazily.
#
# A task starts with references to its input's artifacts (a join: to the
# parameters and constants only). `self$x` loads and caches a value on first
# access; `self$x <- value` sets one. At the end, the values the step set are
# stored (a value equal to its inherited one keeps the inherited reference),
# and every other reference is reported untouched.

new_polyflow_self <- function(flow_name, step_name, refs, store, readonly = character(),
                              foreach_stack = list(), inputs = NULL, max_num_splits = 100L) {
  state <- new.env(parent = emptyenv())
  state$flow_name <- flow_name
  state$step_name <- step_name
  state$refs <- refs
  state$values <- new.env(parent = emptyenv())
  state$assigned <- character()
  state$store <- store
  state$readonly <- readonly
  state$foreach_stack <- foreach_stack
  state$inputs <- inputs
  state$max_num_splits <- max_num_splits
  self <- new.env(parent = emptyenv())
  self$.state <- state
  class(self) <- "polyflow_self"
  self
}

pf_self_state <- function(self) get(".state", envir = self, inherits = FALSE)

pf_self_has <- function(state, name) {
  exists(name, envir = state$values, inherits = FALSE) || !is.null(state$refs[[name]])
}

pf_self_get <- function(state, name) {
  if (exists(name, envir = state$values, inherits = FALSE)) {
    return(get(name, envir = state$values, inherits = FALSE))
  }
  ref <- state$refs[[name]]
  if (is.null(ref)) {
    pf_throw("not_found", sprintf("Flow %s has no artifact '%s' in step '%s'", state$flow_name,
                                  name, state$step_name), artifact = name)
  }
  value <- pf_load_ref(ref$store %||% state$store, ref)
  assign(name, value, envir = state$values)
  value
}

# The item of a foreach artifact a frame stands for.
pf_foreach_item <- function(values, index) {
  if (is.data.frame(values)) {
    return(values[index + 1L, , drop = FALSE])
  }
  values[[index + 1L]]
}

pf_frame_value <- function(state, frame) {
  if (!pf_self_has(state, frame$var)) {
    return(NULL)
  }
  pf_foreach_item(pf_self_get(state, frame$var), frame$index)
}

#' The step's `self`
#'
#' Inside a step, `self$x` reads an artifact (inherited from the previous
#' step, or a parameter or constant) and `self$x <- value` stores one. A few
#' names are computed: `self$input` (the item of the innermost foreach this
#' task stands for), `self$index` (its position, from 0), `self$name` (the
#' flow's name), `self$foreach_stack()` (see [pf_foreach_stack()]) and
#' `self$merge_artifacts(inputs, ...)` (see [pf_merge_artifacts()]).
#'
#' @param x The step's `self`.
#' @param name An artifact's name.
#' @param value The value to store.
#' @return `$`: the value; `$<-`: `self`.
#' @name polyflow-self
#' @family steps
#' @examples
#' # Inside a step function:
#' step <- function(self) {
#'   self$total <- self$a + self$b
#' }
NULL

#' @rdname polyflow-self
#' @export
`$.polyflow_self` <- function(x, name) {
  state <- pf_self_state(x)
  switch(name,
    input = {
      stack <- state$foreach_stack
      if (length(stack)) pf_frame_value(state, stack[[length(stack)]]) else NULL
    },
    index = {
      stack <- state$foreach_stack
      if (length(stack)) stack[[length(stack)]]$index else NULL
    },
    name = state$flow_name,
    foreach_stack = function() pf_foreach_stack(x),
    merge_artifacts = function(inputs, include = NULL, exclude = NULL) {
      pf_merge_artifacts(x, inputs, include = include, exclude = exclude)
    },
    pf_self_get(state, name)
  )
}

#' @rdname polyflow-self
#' @export
`[[.polyflow_self` <- function(x, name) `$.polyflow_self`(x, name)

#' @rdname polyflow-self
#' @export
`$<-.polyflow_self` <- function(x, name, value) {
  state <- pf_self_state(x)
  if (name %in% state$readonly) {
    pf_throw("invalid_argument", sprintf(
      "Cannot set '%s': it is a parameter or constant of %s, read-only in steps", name,
      state$flow_name
    ))
  }
  if (name %in% pf_reserved_names || startsWith(name, "_") || startsWith(name, ".")) {
    pf_throw("invalid_argument", sprintf("Cannot set '%s': the name is reserved", name))
  }
  assign(name, value, envir = state$values)
  state$assigned <- union(state$assigned, name)
  x
}

#' @rdname polyflow-self
#' @export
`[[<-.polyflow_self` <- function(x, name, value) `$<-.polyflow_self`(x, name, value)

#' @rdname polyflow-self
#' @export
names.polyflow_self <- function(x) {
  state <- pf_self_state(x)
  sort(union(names(state$refs), ls(state$values, all.names = TRUE)))
}

#' @export
print.polyflow_self <- function(x, ...) {
  state <- pf_self_state(x)
  cat("<self of step ", state$step_name, " of ", state$flow_name, ": ",
      paste(names(x), collapse = ", "), ">\n", sep = "")
  invisible(x)
}

#' The foreach frames above a task
#'
#' @param self The step's `self` (or a join input).
#' @return A list with one entry per enclosing foreach, outermost first, each a
#'   list of `index` (from 0), `num_splits` and `value` (the item).
#' @family steps
#' @export
#' @examples
#' # Inside a step nested in two foreach steps:
#' step <- function(self) {
#'   self$positions <- lapply(pf_foreach_stack(self), function(f) f$index)
#' }
pf_foreach_stack <- function(self) {
  state <- if (inherits(self, "polyflow_self")) pf_self_state(self) else
    pf_input_state(self)
  lapply(state$foreach_stack, function(frame) {
    list(index = frame$index, num_splits = frame$num_splits,
         value = pf_frame_value(state, frame))
  })
}

# Store what the step set; returns every artifact's ref. `on_error(message)`
# is called for a value that cannot be stored (which is then left out).
pf_persist_self <- function(self, on_error) {
  state <- pf_self_state(self)
  out <- state$refs
  for (name in state$assigned) {
    value <- get(name, envir = state$values, inherits = FALSE)
    ref <- tryCatch({
      encoded <- pf_encode(value)
      old <- state$refs[[name]]
      if (!is.null(old) && identical(old$digest, encoded$digest)) {
        old
      } else {
        digest <- pf_store_put(state$store, encoded$bytes, encoded$digest)
        list(name = name, digest = digest, encoding = encoded$encoding, size = encoded$size,
             type_name = encoded$type_name)
      }
    }, error = function(e) {
      on_error(sprintf("artifact '%s' (%s) cannot be stored: %s", name, pf_type_name(value),
                       conditionMessage(e)))
      NULL
    })
    out[[name]] <- ref
  }
  lapply(out, function(ref) ref[c("name", "digest", "encoding", "size", "type_name")])
}
