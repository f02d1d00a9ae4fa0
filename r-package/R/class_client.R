# Client objects: plain R lists describing what the core recorded (a run, a
# step, a task, an artifact), made from the metadata messages. They are
# snapshots: fetch again to see a run that is still going.

pf_pathspec_of <- function(name) {
  parts <- strsplit(name, "/", fixed = TRUE)[[1]]
  paste(parts[seq(2L, length(parts), by = 2L)], collapse = "/")
}

pf_resource_name <- function(pathspec) {
  parts <- strsplit(pathspec, "/", fixed = TRUE)[[1]]
  kinds <- c("flows", "runs", "steps", "tasks", "artifacts")[seq_along(parts)]
  paste(rbind(kinds, parts), collapse = "/")
}

pf_as_run <- function(proto) {
  state <- pf_enum_name("run_state", proto$state)
  structure(list(
    pathspec = paste(proto$flow_id, proto$run_id, sep = "/"), name = proto$name,
    flow = proto$flow_id, id = proto$run_id, state = state,
    successful = state == "succeeded", finished = state %in% c("succeeded", "failed"),
    tags = as.character(proto$tags), system_tags = as.character(proto$system_tags),
    user = proto$user, created_at = pf_time(proto, "create_time"),
    finished_at = pf_time(proto, "finish_time"), failure_message = proto$failure_message,
    origin_run = if (nzchar(proto$origin_run)) pf_pathspec_of(proto$origin_run) else NULL,
    end_task = if (nzchar(proto$end_task)) pf_pathspec_of(proto$end_task) else NULL
  ), class = "polyflow_run")
}

pf_as_step <- function(proto) {
  structure(list(
    pathspec = pf_pathspec_of(proto$name), name = proto$name, id = proto$step_name,
    created_at = pf_time(proto, "create_time"), finished_at = pf_time(proto, "finish_time")
  ), class = "polyflow_step")
}

pf_as_task <- function(proto) {
  state <- pf_enum_name("task_state", proto$state)
  frames <- pf_frames_from_proto(proto$foreach_stack)
  exception <- NULL
  if (pf_has(proto, "exception") &&
      (nzchar(proto$exception$type) || nzchar(proto$exception$message))) {
    exception <- list(type = proto$exception$type, message = proto$exception$message,
                      traceback = proto$exception$traceback)
  } else if (state == "failed") {
    exception <- list(type = "", message = proto$failure_message, traceback = "")
  }
  metadata <- lapply(proto$metadata, function(e) e$value)
  names(metadata) <- vapply(proto$metadata, function(e) e$key, "")
  structure(list(
    pathspec = pf_pathspec_of(proto$name), name = proto$name, id = proto$task_id,
    step = proto$step_name, state = state, successful = state == "succeeded",
    finished = state %in% c("succeeded", "failed"), attempt = proto$attempt,
    attempt_count = proto$attempt_count,
    index = if (length(frames)) frames[[length(frames)]]$index else NULL,
    foreach_stack = frames, exception = exception, failure_message = proto$failure_message,
    created_at = pf_time(proto, "create_time"), started_at = pf_time(proto, "start_time"),
    finished_at = pf_time(proto, "finish_time"), metadata = metadata,
    input_tasks = vapply(proto$input_tasks, pf_pathspec_of, ""),
    next_steps = as.character(proto$next_steps),
    origin_task = if (nzchar(proto$origin_task)) pf_pathspec_of(proto$origin_task) else NULL
  ), class = "polyflow_task")
}

pf_as_artifact <- function(proto, task_pathspec) {
  ref <- pf_ref_from_proto(proto$ref)
  name <- if (nzchar(ref$name)) ref$name else sub("^.*/", "", proto$name)
  structure(c(
    list(pathspec = paste(task_pathspec, name, sep = "/"), id = name, attempt = proto$attempt,
         created_at = pf_time(proto, "create_time")),
    ref[c("digest", "encoding", "size", "type_name")],
    list(ref = ref)
  ), class = "polyflow_artifact")
}

#' @export
print.polyflow_run <- function(x, ...) {
  cat(sprintf("<run %s: %s%s>\n", x$pathspec, x$state,
              if (length(x$tags)) paste0(", tags ", paste(x$tags, collapse = ", ")) else ""))
  invisible(x)
}

#' @export
print.polyflow_step <- function(x, ...) {
  cat(sprintf("<step %s>\n", x$pathspec))
  invisible(x)
}

#' @export
print.polyflow_task <- function(x, ...) {
  index <- if (is.null(x$index)) "" else sprintf(", index %d", x$index)
  cat(sprintf("<task %s: %s%s>\n", x$pathspec, x$state, index))
  invisible(x)
}

#' @export
print.polyflow_artifact <- function(x, ...) {
  cat(sprintf("<artifact %s: %s, %s, %g bytes>\n", x$pathspec, x$type_name, x$encoding, x$size))
  invisible(x)
}

# The run a pathspec belongs to, checked against the namespace.
pf_checked_run <- function(flow, run_id, check = TRUE) {
  pathspec <- paste(flow, run_id, sep = "/")
  proto <- tryCatch(pf_rpc_get_run(pf_resource_name(pathspec)),
                    polyflow_error_not_found = function(e) {
                      pf_throw_not_found(sprintf("Run '%s' does not exist", pathspec),
                                         pathspec = pathspec)
                    })
  run <- pf_as_run(proto)
  ns <- pf_get_namespace()
  if (check && !is.null(ns) && !ns %in% c(run$tags, run$system_tags)) {
    pf_throw("namespace_mismatch", sprintf(paste0(
      "Run '%s' is not in the current namespace '%s'; switch with pf_namespace(\"<tag>\") ",
      "or see every run with pf_namespace(NULL)"
    ), pathspec, ns), namespace = ns)
  }
  run
}
