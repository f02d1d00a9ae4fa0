# Classed conditions. Every error the package raises has the classes
# c("polyflow_error_<kind>", "polyflow_error", "error", "condition"), is raised
# through a pf_throw_*() helper, and carries the fields a handler may need.
# Argument checks go through pf_assert_*().

#' Conditions raised by polyflow
#'
#' Every error the package raises is a condition of class
#' `polyflow_error_<kind>` and `polyflow_error` (then `error`, `condition`),
#' so that callers can handle one kind with
#' `tryCatch(..., polyflow_error_not_found = function(e) ...)`.
#'
#' Kinds:
#' * `invalid_argument`: a bad argument to a function of the package;
#' * `not_found`: a flow, run, step, task or artifact that does not exist;
#' * `namespace_mismatch`: an object outside the current namespace;
#' * `unavailable`: the core cannot be reached (or cannot run a converter);
#' * `deadline_exceeded`, `failed_precondition`, `data_loss`, `internal`,
#'   `rpc`: other failures of a call to the core (field `code` holds the gRPC
#'   status code, `reason` the machine-readable reason);
#' * `daemon`: a local daemon could not be started;
#' * `graph`: a flow's graph breaks the rules (field `problems`);
#' * `parameter`: a parameter value is missing or does not parse;
#' * `conversion`: a value cannot be converted between languages;
#' * `merge_artifacts`, `unhandled_in_merge_artifacts`,
#'   `missing_in_merge_artifacts`, `invalid_next`: misuse inside a step.
#'
#' @name polyflow-conditions
#' @family conditions
#' @examples
#' res <- tryCatch(
#'   pf_assert_string(1, "name"),
#'   polyflow_error_invalid_argument = function(e) conditionMessage(e)
#' )
#' res
NULL

pf_condition_types <- c(
  unhandled_in_merge_artifacts = "UnhandledInMergeArtifactsError",
  missing_in_merge_artifacts = "MissingInMergeArtifactsError",
  merge_artifacts = "MergeArtifactsError",
  invalid_next = "InvalidNextError",
  task_failed = "TaskFailedError",
  parameter = "ParameterError",
  graph = "GraphError",
  not_found = "NotFoundError",
  namespace_mismatch = "NamespaceMismatchError",
  conversion = "ConversionError",
  step_timeout = "StepTimeoutError",
  failure_handled_by_catch = "FailureHandledByCatchError"
)

#' Raise a classed polyflow error
#'
#' `pf_throw()` raises a condition of class `polyflow_error_<kind>` and
#' `polyflow_error`. The helpers `pf_throw_<kind>()` fix the kind.
#'
#' @param kind The kind, e.g. `"not_found"` (lowercase, underscores).
#' @param message The message; pieces are pasted together.
#' @param ... Further fields stored in the condition.
#' @param call The call to report (none by default).
#' @return Never returns.
#' @family conditions
#' @export
#' @examples
#' tryCatch(pf_throw("not_found", "no such run"), polyflow_error = function(e) class(e))
pf_throw <- function(kind, message, ..., call = NULL) {
  fields <- list(...)
  type <- pf_condition_types[kind]
  cond <- structure(
    c(list(message = paste(message, collapse = ""), call = call, kind = kind,
           type = if (is.na(type)) "PolyflowError" else unname(type)), fields),
    class = c(paste0("polyflow_error_", kind), "polyflow_error", "error", "condition")
  )
  stop(cond)
}

#' @rdname pf_throw
#' @export
pf_throw_invalid_argument <- function(message, ...) {
  pf_throw("invalid_argument", message, ...)
}

#' @rdname pf_throw
#' @export
pf_throw_not_found <- function(message, ...) pf_throw("not_found", message, ...)

#' @rdname pf_throw
#' @export
pf_throw_unavailable <- function(message, ...) pf_throw("unavailable", message, ...)

#' @rdname pf_throw
#' @param problems The graph's problems (a list).
#' @export
pf_throw_graph <- function(message, problems = list(), ...) {
  pf_throw("graph", message, problems = problems, ...)
}

#' @rdname pf_throw
#' @param parameter The name of the parameter at fault.
#' @export
pf_throw_parameter <- function(message, parameter = "", ...) {
  pf_throw("parameter", message, parameter = parameter, ...)
}

#' Check arguments
#'
#' Each helper returns its argument invisibly when it is valid and raises a
#' `polyflow_error_invalid_argument` condition naming the argument otherwise.
#'
#' @param x The value to check.
#' @param name The argument's name, for the message.
#' @param allow_empty Whether `""` is accepted.
#' @return `x`, invisibly.
#' @family conditions
#' @export
#' @examples
#' pf_assert_string("HelloFlow", "name")
pf_assert_string <- function(x, name, allow_empty = FALSE) {
  if (!is.character(x) || length(x) != 1L || is.na(x) || (!allow_empty && !nzchar(x))) {
    pf_throw_invalid_argument(sprintf("`%s` must be a single non-empty string", name))
  }
  invisible(x)
}

#' @rdname pf_assert_string
#' @export
pf_assert_flag <- function(x, name) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    pf_throw_invalid_argument(sprintf("`%s` must be TRUE or FALSE", name))
  }
  invisible(x)
}

#' @rdname pf_assert_string
#' @export
pf_assert_function <- function(x, name) {
  if (!is.function(x)) {
    pf_throw_invalid_argument(sprintf("`%s` must be a function", name))
  }
  invisible(x)
}

#' @rdname pf_assert_string
#' @param pattern A regular expression the string must match.
#' @param what Describes the pattern in the message.
#' @export
pf_assert_name <- function(x, name, pattern = "^[A-Za-z_][A-Za-z0-9_]*$",
                           what = "letters, digits and underscores, not starting with a digit") {
  pf_assert_string(x, name)
  if (!grepl(pattern, x)) {
    pf_throw_invalid_argument(sprintf("`%s` (%s) must use %s", name, encodeString(x, quote = "\""), what))
  }
  invisible(x)
}

#' @rdname pf_assert_string
#' @param class The class the object must have.
#' @export
pf_assert_class <- function(x, class, name) {
  if (!inherits(x, class)) {
    pf_throw_invalid_argument(sprintf("`%s` must be a %s object", name, class))
  }
  invisible(x)
}

#' @rdname pf_assert_string
#' @export
pf_assert_count <- function(x, name) {
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || x < 1 || x != round(x)) {
    pf_throw_invalid_argument(sprintf("`%s` must be a whole number of at least 1", name))
  }
  invisible(x)
}
