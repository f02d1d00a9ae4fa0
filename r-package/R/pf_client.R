#' Read flows and runs
#'
#' The client API reads what the core recorded, for runs made from R or from
#' Python alike. Objects are plain lists (`run$successful`, `run$tags`,
#' `task$index`, `task$exception`...), snapshots of the moment they were read.
#' Runs outside the current namespace (see [pf_namespace()]) are hidden from
#' listings and fail with a `polyflow_error_namespace_mismatch` condition when
#' asked for by name; missing objects with `polyflow_error_not_found`.
#'
#' * `pf_list_flows()`: names of the flows with a run in the namespace;
#' * `pf_list_runs(flow, tags)`: a flow's runs, newest first;
#' * `pf_latest_run(flow)`, `pf_latest_successful_run(flow)`: one run or
#'   `NULL`;
#' * `pf_get_run("Flow/12")`: one run.
#'
#' @param flow A flow's name.
#' @param tags Tags every run must carry.
#' @param pathspec `"Flow/run"` (runs), `"Flow/run/step"` (steps),
#'   `"Flow/run/step/task"` (tasks).
#' @return A `polyflow_run` object, a list of them, or flow names.
#' @family client
#' @export
#' @examples
#' \dontrun{
#' run <- pf_latest_run("HelloFlow")
#' run$successful
#' pf_data(run, "message")
#' }
pf_list_flows <- function() {
  names <- vapply(pf_rpc_list_flows(), function(f) f$flow_id, "")
  ns <- pf_get_namespace()
  if (is.null(ns)) {
    return(names)
  }
  names[vapply(names, function(flow) length(pf_rpc_list_runs(paste0("flows/", flow),
                                                               tags = ns)) > 0L, TRUE)]
}

#' @rdname pf_list_flows
#' @export
pf_list_runs <- function(flow, tags = character()) {
  pf_assert_string(flow, "flow")
  ns <- pf_get_namespace()
  tags <- unique(c(as.character(tags), ns))
  protos <- tryCatch(pf_rpc_list_runs(paste0("flows/", flow), tags = tags),
                     polyflow_error_not_found = function(e) {
                       pf_throw_not_found(sprintf("Flow '%s' does not exist", flow))
                     })
  lapply(protos, pf_as_run)
}

#' @rdname pf_list_flows
#' @export
pf_latest_run <- function(flow) {
  runs <- pf_list_runs(flow)
  if (length(runs)) runs[[1L]] else NULL
}

#' @rdname pf_list_flows
#' @export
pf_latest_successful_run <- function(flow) {
  for (run in pf_list_runs(flow)) {
    if (run$successful) {
      return(run)
    }
  }
  NULL
}

#' @rdname pf_list_flows
#' @export
pf_get_run <- function(pathspec) {
  parts <- pf_split_pathspec(pathspec, 2L)
  pf_checked_run(parts[[1L]], parts[[2L]])
}

pf_split_pathspec <- function(pathspec, depth) {
  if (inherits(pathspec, c("polyflow_run", "polyflow_step", "polyflow_task"))) {
    pathspec <- pathspec$pathspec
  }
  pf_assert_string(pathspec, "pathspec")
  parts <- strsplit(pathspec, "/", fixed = TRUE)[[1]]
  if (length(parts) != depth || !all(nzchar(parts))) {
    pf_throw_invalid_argument(sprintf("'%s' is not a pathspec of the form %s", pathspec,
                                      paste(c("Flow", "run", "step", "task")[seq_len(depth)],
                                            collapse = "/")))
  }
  parts
}

#' Read steps and tasks
#'
#' * `pf_list_steps(run)`: the steps of a run that have tasks, in the order
#'   they first ran;
#' * `pf_get_step(pathspec)`: one step (`"Flow/run/step"`, or a run and a
#'   step name);
#' * `pf_list_tasks(step)`: a step's tasks, by task id;
#' * `pf_get_task(pathspec)`: one task, at its latest attempt or `attempt`.
#'
#' @param run A `polyflow_run` object or a run pathspec.
#' @param step A `polyflow_step` object or a step pathspec; for
#'   `pf_get_step()`, a step name when `pathspec` is a run.
#' @param pathspec A pathspec (or an object).
#' @param attempt An attempt number (from 0); the latest when `NULL`.
#' @return `polyflow_step` and `polyflow_task` objects.
#' @family client
#' @export
#' @examples
#' \dontrun{
#' run <- pf_latest_run("ForeachFlow")
#' tasks <- pf_list_tasks(pf_get_step(run, "square"))
#' vapply(tasks, function(t) pf_data(t, "sq"), numeric(1))
#' }
pf_list_steps <- function(run) {
  parts <- pf_split_pathspec(run, 2L)
  pf_checked_run(parts[[1L]], parts[[2L]])
  steps <- lapply(pf_rpc_list_steps(pf_resource_name(paste(parts, collapse = "/"))), pf_as_step)
  Filter(function(step) !startsWith(step$id, "_"), steps)
}

#' @rdname pf_list_steps
#' @export
pf_get_step <- function(pathspec, step = NULL) {
  if (!is.null(step)) {
    run_parts <- pf_split_pathspec(pathspec, 2L)
    pathspec <- paste(c(run_parts, step), collapse = "/")
  }
  parts <- pf_split_pathspec(pathspec, 3L)
  pf_checked_run(parts[[1L]], parts[[2L]])
  proto <- tryCatch(pf_rpc_get_step(pf_resource_name(paste(parts, collapse = "/"))),
                    polyflow_error_not_found = function(e) {
                      pf_throw_not_found(sprintf("Step '%s' does not exist",
                                                 paste(parts, collapse = "/")))
                    })
  pf_as_step(proto)
}

#' @rdname pf_list_steps
#' @export
pf_list_tasks <- function(step) {
  parts <- pf_split_pathspec(step, 3L)
  pf_checked_run(parts[[1L]], parts[[2L]])
  lapply(pf_rpc_list_tasks(pf_resource_name(paste(parts, collapse = "/"))), pf_as_task)
}

#' @rdname pf_list_steps
#' @export
pf_get_task <- function(pathspec, attempt = NULL) {
  parts <- pf_split_pathspec(pathspec, 4L)
  pf_checked_run(parts[[1L]], parts[[2L]])
  path <- paste(parts, collapse = "/")
  proto <- tryCatch(pf_rpc_get_task(pf_resource_name(path), attempt),
                    polyflow_error_not_found = function(e) {
                      pf_throw_not_found(sprintf("Task '%s' does not exist", path))
                    })
  task <- pf_as_task(proto)
  if (!is.null(attempt)) task$asked_attempt <- as.integer(attempt)
  task
}

#' Read artifacts
#'
#' * `pf_list_artifacts(task)`: the artifacts a task stored (`polyflow_artifact`
#'   objects: `id`, `type_name`, `encoding`, `size`, `digest`);
#' * `pf_data(x, name)`: the value of artifact `name` of a task, or of a run's
#'   end task; without `name`, every artifact's value as a named list;
#' * `pf_artifact_value(artifact)`: the value of one artifact object.
#'
#' Values written by R come back as they were. Values written by Python are
#' converted by the core: `None` is `NULL`, booleans, numbers and strings are
#' length-one vectors, lists are unnamed lists, dicts named lists, numpy
#' arrays vectors or arrays, pandas DataFrames data frames. A value without an
#' R counterpart fails with a `polyflow_error_conversion` condition.
#'
#' @param task,x A task or run (object or pathspec).
#' @param name An artifact's name.
#' @param artifact A `polyflow_artifact` object.
#' @param include_private Include names starting with `_`.
#' @return Artifact objects, or values.
#' @family client
#' @export
#' @examples
#' \dontrun{
#' pf_data("HelloFlow/1/end/3", "message")
#' pf_data(pf_latest_run("HelloFlow"))
#' }
pf_list_artifacts <- function(task, include_private = FALSE) {
  task <- pf_task_of(task)
  protos <- pf_rpc_list_artifacts(task$name, task$asked_attempt, include_private)
  artifacts <- lapply(protos, pf_as_artifact, task_pathspec = task$pathspec)
  names(artifacts) <- vapply(artifacts, function(a) a$id, "")
  artifacts
}

pf_task_of <- function(x) {
  if (inherits(x, "polyflow_task")) {
    return(x)
  }
  if (inherits(x, "polyflow_run")) {
    if (is.null(x$end_task)) {
      pf_throw_not_found(sprintf("Run '%s' has no successful end task", x$pathspec))
    }
    return(pf_get_task(x$end_task))
  }
  depth <- length(strsplit(x, "/", fixed = TRUE)[[1]])
  if (depth == 2L) {
    return(pf_task_of(pf_get_run(x)))
  }
  pf_get_task(x)
}

#' @rdname pf_list_artifacts
#' @export
pf_artifact_value <- function(artifact) {
  pf_assert_class(artifact, "polyflow_artifact", "artifact")
  pf_load_ref(pf_client_store(), artifact$ref)
}

#' @rdname pf_list_artifacts
#' @export
pf_data <- function(x, name = NULL) {
  task <- pf_task_of(x)
  if (is.null(name)) {
    artifacts <- pf_list_artifacts(task)
    return(lapply(artifacts, pf_artifact_value))
  }
  pf_assert_string(name, "name")
  proto <- tryCatch(
    pf_rpc_get_artifact(paste0(task$name, "/artifacts/", name), task$asked_attempt),
    polyflow_error_not_found = function(e) {
      pf_throw_not_found(sprintf("Task '%s' has no artifact '%s'", task$pathspec, name),
                         artifact = name)
    }
  )
  pf_artifact_value(pf_as_artifact(proto, task$pathspec))
}

#' Read what a task printed
#'
#' @param task A task (object or pathspec).
#' @return The task's standard output or standard error, as one string.
#' @family client
#' @export
#' @examples
#' \dontrun{
#' cat(pf_stdout("HelloFlow/1/start/1"))
#' }
pf_stdout <- function(task) {
  task <- pf_task_of(task)
  pf_rpc_read_log(task$name, "stdout", task$asked_attempt)
}

#' @rdname pf_stdout
#' @export
pf_stderr <- function(task) {
  task <- pf_task_of(task)
  pf_rpc_read_log(task$name, "stderr", task$asked_attempt)
}

#' A run's tags
#'
#' `pf_tags()` gives a run's user tags; `pf_add_tags()`, `pf_remove_tags()`
#' and `pf_replace_tags()` change them (system tags such as `user:<name>`
#' never change).
#'
#' @param run A run (object or pathspec).
#' @param tags Tags to add or remove.
#' @param remove,add Tags to remove, then tags to add (one atomic change).
#' @param system Also list the system tags.
#' @return The tags (after the change).
#' @family client
#' @export
#' @examples
#' \dontrun{
#' pf_add_tags("HelloFlow/1", "reviewed")
#' pf_tags("HelloFlow/1")
#' }
pf_tags <- function(run, system = FALSE) {
  parts <- pf_split_pathspec(run, 2L)
  run <- pf_checked_run(parts[[1L]], parts[[2L]])
  if (system) sort(unique(c(run$tags, run$system_tags))) else run$tags
}

#' @rdname pf_tags
#' @export
pf_add_tags <- function(run, tags) pf_replace_tags(run, remove = character(), add = tags)

#' @rdname pf_tags
#' @export
pf_remove_tags <- function(run, tags) pf_replace_tags(run, remove = tags, add = character())

#' @rdname pf_tags
#' @export
pf_replace_tags <- function(run, remove, add) {
  parts <- pf_split_pathspec(run, 2L)
  pf_checked_run(parts[[1L]], parts[[2L]])
  request <- pf_msg("metadata.MutateRunTagsRequest",
                    run = pf_resource_name(paste(parts, collapse = "/")))
  if (length(add)) request$add_tags <- as.character(add)
  if (length(remove)) request$remove_tags <- as.character(remove)
  response <- pf_call("metadata.MetadataService/MutateRunTags", request,
                      "metadata.MutateRunTagsResponse")
  as.character(response$run$tags)
}
