#' Add a step to a flow
#'
#' A step is an R function of `self` (a join: of `self` and `inputs`) and the
#' transition taken when it ends. Inside the function, `self$x <- value`
#' stores an artifact, `self$x` reads one (inherited from the previous step,
#' a parameter or a constant), `self$input` and `self$index` give a foreach
#' task's item and position. The transition is declared here, not called in
#' the function: the worker takes it when the function returns.
#'
#' Transitions:
#' * `next_step = "b"`: go to step `b`;
#' * `next_step = c("a", "b")`: a static split into parallel branches, closed
#'   later by a join step;
#' * `next_step = "b", foreach = "xs"`: one task of `b` per item of the
#'   artifact `xs` (a list, a vector, or the rows of a data frame);
#' * `switch = c(x = "a", y = "b"), condition = "c"`: go to `a` when the
#'   artifact `c` is `"x"`, to `b` when it is `"y"`;
#' * none: the end step.
#'
#' The start step is the step named `start` (or marked `start = TRUE`), the
#' end step the one named `end` (or marked `end = TRUE`). The graph rules are
#' the core's, shared with Python: see [pf_check()].
#'
#' @param flow A flow made with [pf_flow()].
#' @param name The step's name: lowercase letters, digits and underscores.
#' @param fun The step's function: `function(self)`, or `function(self,
#'   inputs)` for a join. Omit it for a step implemented in Python (`python`).
#' @param next_step The step(s) that follow.
#' @param foreach The artifact to fan out over (with one `next_step`).
#' @param switch A named character vector of case values to steps.
#' @param condition The artifact whose value picks the `switch` case.
#' @param join Whether the step is a join; by default, whether `fun` takes
#'   two arguments.
#' @param start,end Mark the step as the flow's start or end step.
#' @param decorators Decorators made with [pf_decorator()].
#' @param doc A description of the step.
#' @param python A Python function implementing the step, from
#'   [pf_python()].
#' @return The flow.
#' @family authoring
#' @export
#' @examples
#' flow <- pf_flow("ForeachFlow") |>
#'   pf_step("start", function(self) self$xs <- list(1, 2, 3),
#'           next_step = "square", foreach = "xs") |>
#'   pf_step("square", function(self) self$sq <- self$input^2, next_step = "join") |>
#'   pf_step("join", function(self, inputs) {
#'     self$total <- sum(unlist(pf_gather(inputs, "sq")))
#'   }, next_step = "end") |>
#'   pf_step("end", function(self) NULL)
pf_step <- function(flow, name, fun = NULL, next_step = NULL, foreach = NULL, switch = NULL,
                    condition = NULL, join = NULL, start = FALSE, end = FALSE,
                    decorators = list(), doc = "", python = NULL) {
  pf_assert_class(flow, "polyflow_flow", "flow")
  pf_assert_string(name, "name")
  if (!is.null(fun) && !is.null(python)) {
    pf_throw_invalid_argument(sprintf("step '%s': give `fun` or `python`, not both", name))
  }
  if (is.null(fun) && is.null(python)) {
    pf_throw_invalid_argument(sprintf("step '%s' needs a function (`fun`)", name))
  }
  if (!is.null(fun)) {
    pf_assert_function(fun, "fun")
  }
  if (!is.null(python)) {
    pf_assert_class(python, "polyflow_foreign", "python")
  }
  if (name %in% names(flow$steps)) {
    pf_throw_invalid_argument(sprintf("flow %s already has a step named '%s'", flow$name, name))
  }
  if (!is.null(next_step) && (!is.character(next_step) || anyNA(next_step) ||
                              !length(next_step))) {
    pf_throw_invalid_argument(sprintf("step '%s': `next_step` must name steps", name))
  }
  if (!is.null(foreach)) {
    pf_assert_string(foreach, "foreach")
    if (length(next_step) != 1L) {
      pf_throw_invalid_argument(sprintf(
        "step '%s': a foreach goes to exactly one step (`next_step`)", name
      ))
    }
  }
  if (!is.null(switch)) {
    if (!is.character(switch) || is.null(names(switch)) || !all(nzchar(names(switch)))) {
      pf_throw_invalid_argument(sprintf(
        "step '%s': `switch` must be a named character vector of case values to steps", name
      ))
    }
    if (!is.null(next_step) || !is.null(foreach)) {
      pf_throw_invalid_argument(sprintf(
        "step '%s': a switch cannot be combined with `next_step` or `foreach`", name
      ))
    }
    pf_assert_string(condition, "condition")
  } else if (!is.null(condition)) {
    pf_throw_invalid_argument(sprintf("step '%s': `condition` needs `switch`", name))
  }
  pf_assert_flag(start, "start")
  pf_assert_flag(end, "end")
  pf_assert_string(doc, "doc", allow_empty = TRUE)
  num_args <- if (!is.null(fun)) length(formals(fun)) else if (isTRUE(join)) 2L else 1L
  if (is.null(join)) {
    join <- num_args >= 2L
  }
  pf_assert_flag(join, "join")
  flow$steps[[name]] <- list(
    name = name, fun = fun, next_step = next_step, foreach = foreach, switch = switch,
    condition = condition, join = join, num_args = num_args, start = start, end = end,
    decorators = pf_check_decorators(decorators), doc = doc,
    language = if (is.null(python)) "r" else "python",
    foreign_file = if (is.null(python)) "" else python$file,
    foreign_function = if (is.null(python)) "" else python$function_name
  )
  flow
}

#' Implement a step with a Python function
#'
#' A step of an R flow can run as a Python function: `pf_step("prepare",
#' python = pf_python("prepare.py", "prepare"), next_step = "fit")`. The
#' Python task worker imports the file (relative to the flow's folder) and
#' calls `prepare(self)` (a join: `prepare(self, inputs)`), where `self`
#' works as in a Python flow (`self.x = ...`, `self.input`, `self.index`).
#' Artifacts cross between the languages with the core's conversions
#' (`vignette`-free summary: NULL/None, logicals, numbers, strings, lists,
#' named lists/dicts, vectors, matrices/numpy arrays, data frames/pandas).
#' The Python interpreter is `POLYFLOW_PYTHON`, else `python3`; it needs the
#' `polyflow` Python package.
#'
#' @param file The Python file, relative to the flow's folder.
#' @param function_name The function to call.
#' @return A `polyflow_foreign` object for [pf_step()]'s `python` argument.
#' @family authoring
#' @export
#' @examples
#' pf_python("prepare.py", "prepare")
pf_python <- function(file, function_name) {
  pf_assert_string(file, "file")
  pf_assert_name(function_name, "function_name")
  structure(list(file = file, function_name = function_name, language = "python"),
            class = "polyflow_foreign")
}

#' @export
print.polyflow_foreign <- function(x, ...) {
  cat("<", x$language, " function ", x$function_name, " in ", x$file, ">\n", sep = "")
  invisible(x)
}
