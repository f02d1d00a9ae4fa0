#' Start a flow
#'
#' A flow is a graph of steps. Build it with `pf_flow()`, then add
#' parameters, constants and steps with the pipe, and end the script with
#' [pf_main()], which gives the file its command line
#' (`Rscript flow.R run`, `show`, `check`, `logs`...).
#'
#' @param name The flow's name, e.g. `"HelloFlow"`: letters, digits and
#'   underscores, not starting with a digit.
#' @param doc A description, shown by `show` and `--help`.
#' @param decorators Flow-level decorators, made with [pf_decorator()].
#' @return A `polyflow_flow` object.
#' @family authoring
#' @export
#' @examples
#' flow <- pf_flow("HelloFlow", doc = "A flow where Polyflow prints 'Hi'.") |>
#'   pf_step("start", function(self) {
#'     cat("Polyflow says: Hi!\n")
#'   }, next_step = "hello") |>
#'   pf_step("hello", function(self) {
#'     self$message <- "Hello from R"
#'   }, next_step = "end") |>
#'   pf_step("end", function(self) NULL)
#' flow
pf_flow <- function(name, doc = "", decorators = list()) {
  pf_assert_name(name, "name")
  pf_assert_string(doc, "doc", allow_empty = TRUE)
  new_polyflow_flow(name = name, doc = doc, decorators = pf_check_decorators(decorators))
}

new_polyflow_flow <- function(name, doc = "", steps = list(), parameters = list(),
                              constants = list(), decorators = list(), source_file = "") {
  structure(
    list(name = name, doc = doc, steps = steps, parameters = parameters,
         constants = constants, decorators = decorators, source_file = source_file),
    class = "polyflow_flow"
  )
}

#' @export
print.polyflow_flow <- function(x, ...) {
  cat("<polyflow flow ", x$name, ">\n", sep = "")
  if (nzchar(x$doc)) {
    cat(x$doc, "\n", sep = "")
  }
  if (length(x$parameters)) {
    cat("Parameters:", paste(names(x$parameters), collapse = ", "), "\n")
  }
  if (length(x$constants)) {
    cat("Constants:", paste(names(x$constants), collapse = ", "), "\n")
  }
  for (step in x$steps) {
    cat("  ", step$name, pf_edges_text(step), "\n", sep = "")
  }
  invisible(x)
}

pf_edges_text <- function(step) {
  if (length(step$switch)) {
    cases <- paste0("'", names(step$switch), "': ", step$switch, collapse = ", ")
    return(sprintf(" => {%s} (switch on self$%s)", cases, step$condition))
  }
  if (!length(step$next_step)) {
    return("")
  }
  text <- paste0(" => ", paste(step$next_step, collapse = ", "))
  if (!is.null(step$foreach)) {
    text <- paste0(text, " (foreach over self$", step$foreach, ")")
  }
  text
}

#' Add a constant to a flow
#'
#' Constants are read-only values stored with the parameters: every task
#' sees them as artifacts (`self$name`), joins included.
#'
#' @param flow A flow made with [pf_flow()].
#' @param name The constant's name.
#' @param value Its value (any R value).
#' @return The flow.
#' @family authoring
#' @export
#' @examples
#' pf_flow("ConstFlow") |> pf_constant("limit", 3L)
pf_constant <- function(flow, name, value) {
  pf_assert_class(flow, "polyflow_flow", "flow")
  pf_assert_artifact_name(name, "name")
  if (name %in% c(names(flow$parameters), names(flow$constants))) {
    pf_throw_invalid_argument(sprintf("flow %s already has a parameter or constant named '%s'",
                                      flow$name, name))
  }
  flow$constants[name] <- list(value)
  flow
}

pf_reserved_names <- c("name", "next", "input", "index", "cmd", "foreach_stack",
                       "merge_artifacts")

pf_assert_artifact_name <- function(x, name) {
  pf_assert_name(x, name)
  if (x %in% pf_reserved_names || startsWith(x, "_")) {
    pf_throw_invalid_argument(sprintf("`%s`: '%s' is reserved; choose another name", name, x))
  }
  invisible(x)
}

#' Describe a decorator
#'
#' Decorators attach behaviour to a step (or to every step of a flow) by name,
#' with attributes, as in Python (`@retry(times=3)`). The core and the
#' executors act on the decorators they know; the R worker itself applies
#' none yet.
#'
#' @param name The decorator's registered name, e.g. `"retry"`.
#' @param ... Its attributes, as `name = value` (any JSON-able value).
#' @return A `polyflow_decorator` object.
#' @family authoring
#' @export
#' @examples
#' pf_decorator("retry", times = 3L)
pf_decorator <- function(name, ...) {
  pf_assert_name(name, "name", "^[A-Za-z_][A-Za-z0-9_.-]*$",
                 "letters, digits, '_', '.' and '-', not starting with a digit")
  attributes <- list(...)
  if (length(attributes) && (is.null(names(attributes)) || !all(nzchar(names(attributes))))) {
    pf_throw_invalid_argument("decorator attributes must be named")
  }
  encoded <- vapply(attributes, function(value) {
    if (pf_json_exact(value)) pf_to_json(value) else
      as.character(jsonlite::toJSON(value, auto_unbox = TRUE, digits = NA))
  }, "")
  structure(list(name = name, attributes = as.list(encoded)), class = "polyflow_decorator")
}

#' @export
print.polyflow_decorator <- function(x, ...) {
  cat(pf_decorator_text(x), "\n", sep = "")
  invisible(x)
}

pf_decorator_text <- function(x) {
  if (!length(x$attributes)) {
    return(paste0("@", x$name))
  }
  paste0("@", x$name, "(", paste0(names(x$attributes), "=", unlist(x$attributes),
                                  collapse = ", "), ")")
}

pf_check_decorators <- function(decorators) {
  if (inherits(decorators, "polyflow_decorator")) {
    decorators <- list(decorators)
  }
  if (!is.list(decorators) || !all(vapply(decorators, inherits, TRUE, "polyflow_decorator"))) {
    pf_throw_invalid_argument("`decorators` must be a list of pf_decorator() objects")
  }
  unname(decorators)
}
