# The core client: one connection description per process, and a function per
# RPC the package calls. Messages stay inside the package: exported functions
# return plain R values.

pf_new_core <- function(address, root = NULL, token = Sys.getenv("POLYFLOW_CORE_TOKEN")) {
  conn <- pf_parse_address(address)
  conn$token <- token
  conn$root <- root
  structure(conn, class = "polyflow_core")
}

#' @export
print.polyflow_core <- function(x, ...) {
  cat("<polyflow core at ", x$address, ">\n", sep = "")
  invisible(x)
}

# This process's core: found (and a local daemon started) on first use.
pf_core <- function() {
  endpoint <- pf_resolve_endpoint()
  key <- paste(endpoint$address, endpoint$root %||% "")
  cached <- pf_state$core
  if (!is.null(cached) && identical(pf_state$core_key, key)) {
    return(cached)
  }
  if (!is.null(endpoint$root)) {
    pf_ensure_daemon(endpoint$root)
  }
  core <- pf_new_core(endpoint$address, endpoint$root)
  pf_state$core <- core
  pf_state$core_key <- key
  pf_state$store_info <- NULL
  core
}

pf_reset_core <- function() {
  pf_state$core <- NULL
  pf_state$core_key <- NULL
  pf_state$store_info <- NULL
  invisible(NULL)
}

# A unary call on this process's core. A local daemon that went away (it exits
# when idle) is started again once, and the call retried.
pf_call <- function(method, request, response_type, timeout = 60, core = NULL) {
  core <- core %||% pf_core()
  tryCatch(
    pf_grpc_unary(core, method, request, response_type, timeout = timeout),
    polyflow_error_unavailable = function(e) {
      # Only a core that did not answer is restarted; an answer (e.g. no converter) is final.
      if (is.null(core$root) || nzchar(e$reason %||% "")) {
        stop(e)
      }
      pf_ensure_daemon(core$root)
      pf_grpc_unary(core, method, request, response_type, timeout = timeout)
    }
  )
}

# Every item of a paged List call.
pf_list_all <- function(method, request, response_type, field, core = NULL) {
  items <- list()
  repeat {
    response <- pf_call(method, request, response_type, core = core)
    items <- c(items, as.list(response[[field]]))
    token <- response$next_page_token
    if (!nzchar(token)) {
      break
    }
    request$page_token <- token
  }
  items
}

pf_rpc_server_info <- function(core = NULL) {
  pf_call("runtime.RuntimeService/GetServerInfo", pf_msg("runtime.GetServerInfoRequest"),
          "runtime.GetServerInfoResponse", core = core)
}

pf_rpc_validate_graph <- function(graph, core = NULL) {
  pf_call("runtime.RuntimeService/ValidateGraph",
          pf_msg("runtime.ValidateGraphRequest", graph = graph),
          "runtime.ValidateGraphResponse", core = core)
}

pf_rpc_start_run <- function(request, core = NULL) {
  pf_call("runtime.RuntimeService/StartRun", request, "runtime.StartRunResponse",
          core = core)$run
}

pf_rpc_cancel_run <- function(run_name, reason, core = NULL) {
  pf_call("runtime.RuntimeService/CancelRun",
          pf_msg("runtime.CancelRunRequest", run = run_name, reason = reason),
          "runtime.CancelRunResponse", core = core)$run
}

pf_rpc_watch_run <- function(run_name, after_sequence, on_event, exclude_logs = FALSE,
                             core = NULL) {
  core <- core %||% pf_core()
  request <- pf_msg("runtime.WatchRunRequest", run = run_name,
                    after_sequence = after_sequence, exclude_logs = exclude_logs)
  pf_grpc_stream(core, "runtime.RuntimeService/WatchRun", request,
                 "runtime.WatchRunResponse", function(response) on_event(response$event))
}

pf_rpc_get_flow <- function(name, core = NULL) {
  pf_call("metadata.MetadataService/GetFlow", pf_msg("metadata.GetFlowRequest", name = name),
          "metadata.GetFlowResponse", core = core)$flow
}

pf_rpc_list_flows <- function(core = NULL) {
  pf_list_all("metadata.MetadataService/ListFlows",
              pf_msg("metadata.ListFlowsRequest", page_size = 1000L),
              "metadata.ListFlowsResponse", "flows", core = core)
}

pf_rpc_list_runs <- function(parent, tags = character(), core = NULL) {
  request <- pf_msg("metadata.ListRunsRequest", parent = parent, page_size = 1000L)
  if (length(tags)) {
    request$tags <- as.character(tags)
  }
  pf_list_all("metadata.MetadataService/ListRuns", request, "metadata.ListRunsResponse",
              "runs", core = core)
}

pf_rpc_get_run <- function(name, core = NULL) {
  pf_call("metadata.MetadataService/GetRun", pf_msg("metadata.GetRunRequest", name = name),
          "metadata.GetRunResponse", core = core)$run
}

pf_rpc_list_steps <- function(parent, core = NULL) {
  pf_list_all("metadata.MetadataService/ListSteps",
              pf_msg("metadata.ListStepsRequest", parent = parent, page_size = 1000L),
              "metadata.ListStepsResponse", "steps", core = core)
}

pf_rpc_get_step <- function(name, core = NULL) {
  pf_call("metadata.MetadataService/GetStep", pf_msg("metadata.GetStepRequest", name = name),
          "metadata.GetStepResponse", core = core)$step
}

pf_rpc_list_tasks <- function(parent, core = NULL) {
  pf_list_all("metadata.MetadataService/ListTasks",
              pf_msg("metadata.ListTasksRequest", parent = parent, page_size = 1000L),
              "metadata.ListTasksResponse", "tasks", core = core)
}

pf_rpc_get_task <- function(name, attempt = NULL, core = NULL) {
  request <- pf_msg("metadata.GetTaskRequest", name = name)
  if (!is.null(attempt)) {
    request$attempt <- as.integer(attempt)
  }
  pf_call("metadata.MetadataService/GetTask", request, "metadata.GetTaskResponse",
          core = core)$task
}

pf_rpc_list_artifacts <- function(parent, attempt = NULL, include_private = FALSE,
                                  core = NULL) {
  request <- pf_msg("metadata.ListArtifactsRequest", parent = parent, page_size = 10000L,
                    include_private = include_private)
  if (!is.null(attempt)) {
    request$attempt <- as.integer(attempt)
  }
  pf_list_all("metadata.MetadataService/ListArtifacts", request,
              "metadata.ListArtifactsResponse", "artifacts", core = core)
}

pf_rpc_get_artifact <- function(name, attempt = NULL, core = NULL) {
  request <- pf_msg("metadata.GetArtifactRequest", name = name)
  if (!is.null(attempt)) {
    request$attempt <- as.integer(attempt)
  }
  pf_call("metadata.MetadataService/GetArtifact", request, "metadata.GetArtifactResponse",
          core = core)$artifact
}

# The whole of one log stream of a task attempt, as text.
pf_rpc_read_log <- function(task_name, stream, attempt = NULL, core = NULL) {
  chunks <- list()
  offset <- 0
  repeat {
    request <- pf_msg("metadata.ReadTaskLogRequest", task = task_name,
                      stream = pf_enum$log_stream[[stream]], offset = offset)
    if (!is.null(attempt)) {
      request$attempt <- as.integer(attempt)
    }
    response <- pf_call("metadata.MetadataService/ReadTaskLog", request,
                        "metadata.ReadTaskLogResponse", core = core)
    chunks[[length(chunks) + 1L]] <- response$data
    next_offset <- as.numeric(response$next_offset)
    if (response$eof || next_offset <= offset || length(response$data) == 0L) {
      break
    }
    offset <- next_offset
  }
  text <- rawToChar(do.call(c, c(list(raw(0)), chunks)))
  Encoding(text) <- "UTF-8"
  text
}

pf_rpc_store_info <- function(core = NULL) {
  core <- core %||% pf_core()
  if (!is.null(pf_state$store_info) && identical(core, pf_state$core)) {
    return(pf_state$store_info)
  }
  store <- pf_call("datastore.DatastoreService/GetStoreInfo",
                   pf_msg("datastore.GetStoreInfoRequest"),
                   "datastore.GetStoreInfoResponse", core = core)$store
  info <- list(kind = store$kind, root = store$root)
  if (identical(core, pf_state$core)) {
    pf_state$store_info <- info
  }
  info
}

pf_rpc_read_blob <- function(digest, core = NULL) {
  core <- core %||% pf_core()
  chunks <- list()
  pf_grpc_stream(core, "datastore.DatastoreService/ReadBlob",
                 pf_msg("datastore.ReadBlobRequest", digest = digest),
                 "datastore.ReadBlobResponse",
                 function(response) chunks[[length(chunks) + 1L]] <<- response$data)
  do.call(c, c(list(raw(0)), chunks))
}

pf_rpc_upload_blob <- function(bytes, core = NULL) {
  upload_id <- paste0("r-", paste(sample(c(letters, 0:9), 24L, replace = TRUE), collapse = ""))
  chunk <- 1048576
  total <- length(bytes)
  offset <- 0
  repeat {
    end <- min(total, offset + chunk)
    data <- if (end > offset) bytes[(offset + 1):end] else raw(0)
    pf_call("datastore.DatastoreService/WriteBlobChunk",
            pf_msg("datastore.WriteBlobChunkRequest", upload_id = upload_id,
                   offset = offset, data = data),
            "datastore.WriteBlobChunkResponse", core = core)
    offset <- end
    if (offset >= total) {
      break
    }
  }
  response <- pf_call("datastore.DatastoreService/CommitBlob",
                      pf_msg("datastore.CommitBlobRequest", upload_id = upload_id),
                      "datastore.CommitBlobResponse", core = core)
  response$digest
}

# Ask the core for a stored value in an encoding R reads; returns the new ref
# as a plain list (digest, encoding, size, type_name).
pf_rpc_convert_blob <- function(digest, encoding, accept = "rds", core = NULL) {
  request <- pf_msg("datastore.ConvertBlobRequest", digest = digest, encoding = encoding)
  request$accept_encodings <- accept
  ref <- pf_call("datastore.DatastoreService/ConvertBlob", request,
                 "datastore.ConvertBlobResponse", timeout = 600, core = core)$ref
  pf_ref_from_proto(ref)
}
