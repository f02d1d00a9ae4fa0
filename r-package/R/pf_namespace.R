#' The client namespace
#'
#' The client API shows the runs of one namespace: a run is in namespace `ns`
#' when it carries `ns` as a tag (user or system tag). The default is
#' `"user:<you>"`; inside a task it is the namespace its run was started in.
#' `pf_namespace(NULL)` shows every run (the global namespace).
#'
#' @param ns A tag such as `"user:alice"`, or `NULL` for every run.
#' @return The namespace now in effect (`NULL`: global).
#' @family client
#' @export
#' @examples
#' old <- pf_get_namespace()
#' pf_namespace(NULL)
#' pf_get_namespace()
#' pf_namespace(old)
pf_namespace <- function(ns) {
  if (!is.null(ns)) {
    pf_assert_string(ns, "ns")
  }
  pf_state$namespace <- list(value = ns)
  invisible(ns)
}

#' @rdname pf_namespace
#' @export
pf_get_namespace <- function() {
  if (!is.null(pf_state$namespace)) {
    return(pf_state$namespace$value)
  }
  pf_namespace_default()
}

#' @rdname pf_namespace
#' @export
pf_default_namespace <- function() {
  pf_state$namespace <- NULL
  pf_get_namespace()
}

pf_namespace_default <- function() {
  from_env <- Sys.getenv("POLYFLOW_NAMESPACE", unset = NA)
  if (!is.na(from_env)) {
    return(if (nzchar(from_env)) from_env else NULL)
  }
  paste0("user:", pf_current_user())
}
