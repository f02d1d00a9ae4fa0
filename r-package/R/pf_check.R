#' Check a flow's graph
#'
#' Asks the core to check the graph against the rules every flow follows
#' (the same rules and messages for R and Python flows): one start and one
#' end step, known transition targets, joins that close splits, no cycles
#' outside switches, every step reachable...
#'
#' @param flow A flow.
#' @return `pf_check()`: the problems found (a list of `rule`, `message`,
#'   `step`, `file`, `line`), invisibly; each is also printed, as
#'   `<file>:<line>: step '<s>': <message>`. `pf_show()`: the text printed.
#' @family running
#' @export
#' @examples
#' \dontrun{
#' flow <- pf_flow("Broken") |>
#'   pf_step("start", function(self) NULL, next_step = "nowhere") |>
#'   pf_step("end", function(self) NULL)
#' pf_check(flow)
#' }
pf_check <- function(flow) {
  pf_assert_class(flow, "polyflow_flow", "flow")
  problems <- pf_validate(flow)$problems
  if (length(problems)) {
    for (problem in problems) message(pf_format_problem(problem, flow$source_file))
  } else {
    message("    The graph looks good!")
  }
  invisible(problems)
}

#' @rdname pf_check
#' @export
pf_show <- function(flow) {
  pf_assert_class(flow, "polyflow_flow", "flow")
  checked <- pf_validate(flow)
  text <- pf_show_text(checked$derived %||% checked$graph)
  cat(text)
  invisible(text)
}
