#' polyflow: workflows in R on the Polyflow core
#'
#' Write flows with [pf_flow()], [pf_step()] and [pf_parameter()], end the
#' script with [pf_main()], and run it with `Rscript flow.R run`. Read results
#' of R and Python runs with [pf_latest_run()], [pf_list_tasks()] and
#' [pf_data()].
#'
#' The package speaks the core's gRPC contract itself (libcurl HTTP/2 and
#' RProtoBuf reading the shipped `.proto` files); R steps run in R task
#' workers (`Rscript`) launched by the core's executor.
#'
#' @keywords internal
#' @importFrom RProtoBuf P
"_PACKAGE"

.onLoad <- function(libname, pkgname) {
  # Nothing is printed; protos are read on first use.
  pf_state$protos_loaded <- FALSE
  invisible(NULL)
}
