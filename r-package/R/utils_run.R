# `run` and `resume`: validate, store the parameters, start the run and follow
# it to the end, printing what the Python CLI prints
# (python-sdk/polyflow/_cli/_run.py). Nothing reaches the core's run table
# until the graph is valid and every parameter value parses.

pf_current_user <- function() {
  for (variable in c("POLYFLOW_USER", "USER")) {
    value <- Sys.getenv(variable)
    if (nzchar(value)) {
      return(value)
    }
  }
  user <- Sys.info()[["user"]]
  if (is.null(user) || !nzchar(user)) "unknown" else user
}

pf_package_version <- function() {
  as.character(utils::packageVersion("polyflow"))
}

pf_rscript <- function() {
  path <- file.path(R.home("bin"), "Rscript")
  if (file.exists(path)) path else unname(Sys.which("Rscript"))
}

pf_map_entries <- function(type, values) {
  lapply(names(values), function(key) pf_msg(type, key = key, value = values[[key]]))
}

pf_worker_environment <- function(flow) {
  interpreters <- list(pf_msg("runtime.Interpreter", language = pf_enum$language[["r"]],
                              executable = pf_rscript()))
  if (any(vapply(flow$steps, function(s) s$language == "python", TRUE))) {
    interpreters[[2L]] <- pf_msg("runtime.Interpreter",
                                 language = pf_enum$language[["python"]],
                                 executable = pf_core_python())
  }
  environment <- pf_msg("runtime.WorkerEnvironment", working_directory = getwd(),
                        code_path = flow$source_file)
  environment$interpreters <- interpreters
  variables <- as.list(Sys.getenv())
  environment$variables <- pf_map_entries("runtime.WorkerEnvironment.VariablesEntry",
                                          variables)
  environment
}

pf_system_tags <- function() {
  r <- paste(R.version$major, R.version$minor, sep = ".")
  c(paste0("r_version:", r), paste0("polyflow_version:", pf_package_version()), "runtime:dev")
}

# A run's events, printed as they come; remembers how the run ended.
pf_follower <- function(console) {
  state <- new.env(parent = emptyenv())
  state$last_sequence <- 0
  state$finished <- FALSE
  state$succeeded <- FALSE
  state$failure <- ""
  state$failed_tasks <- character()
  state$recent_stderr <- list()
  event_time <- function(event) if (pf_has(event, "time")) pf_time(event, "time") else NULL
  state$handle <- function(event) {
    state$last_sequence <- max(state$last_sequence, as.numeric(event$sequence))
    when <- event_time(event)
    if (pf_has(event, "log_line")) {
      line <- event$log_line
      stderr <- line$stream == pf_enum$log_stream[["stderr"]]
      console$log(line$pathspec, line$text, stderr = stderr, when = when)
      if (stderr) {
        key <- paste(line$pathspec, line$attempt)
        state$recent_stderr[[key]] <- utils::tail(c(state$recent_stderr[[key]], line$text), 200L)
      }
    } else if (pf_has(event, "task_started")) {
      started <- event$task_started
      retry <- if (started$attempt > 0L) sprintf(" (retry %d)", started$attempt) else ""
      console$task(started$pathspec, paste0("Task is starting", retry, "."), when)
    } else if (pf_has(event, "task_finished")) {
      pf_follow_task_finished(state, console, event$task_finished, when)
    } else if (pf_has(event, "message")) {
      console$event(event$message$text, when)
    } else if (pf_has(event, "run_finished")) {
      done <- event$run_finished
      state$finished <- TRUE
      state$succeeded <- done$state == pf_enum$run_state[["succeeded"]]
      state$failure <- done$failure_message
    }
  }
  state
}

pf_follow_task_finished <- function(state, console, finished, when) {
  key <- paste(finished$pathspec, finished$attempt)
  printed <- state$recent_stderr[[key]] %||% character()
  state$recent_stderr[[key]] <- NULL
  if (finished$state == pf_enum$task_state[["succeeded"]]) {
    console$task(finished$pathspec, "Task finished successfully.", when)
    return(invisible())
  }
  error <- finished$exception
  reason <- if (nzchar(finished$failure_message)) finished$failure_message else "no reason given"
  lines <- paste("Task failed:", reason)
  traceback <- strsplit(sub("\n+$", "", error$traceback), "\n", fixed = TRUE)[[1]]
  if (length(traceback) && !pf_already_printed(traceback, printed)) {
    lines <- c(lines, traceback)
  } else if (!length(traceback) && (nzchar(error$type) || nzchar(error$message))) {
    lines <- c(lines, paste0(error$type, ": ", error$message))
  }
  if (finished$will_retry) {
    lines <- c(lines, "The task will be retried.")
  } else {
    state$failed_tasks <- c(state$failed_tasks, finished$pathspec)
  }
  console$task_failure(finished$pathspec, lines, when)
}

pf_already_printed <- function(traceback, printed) {
  first <- match(traceback[[1L]], printed)
  if (is.na(first)) {
    return(FALSE)
  }
  traceback[[length(traceback)]] %in% printed[first:length(printed)]
}

# Print the run's events until it finishes; reconnect when the stream drops.
pf_follow <- function(core, run_name, follower) {
  reconnects <- 0L
  while (!follower$finished) {
    ok <- tryCatch({
      pf_rpc_watch_run(run_name, follower$last_sequence, follower$handle, core = core)
      TRUE
    }, polyflow_error_unavailable = function(e) {
      if (reconnects >= 3L) stop(e)
      FALSE
    })
    if (!follower$finished) {
      reconnects <- reconnects + 1L
      if (reconnects > 3L) {
        pf_throw_unavailable("the run's event stream ended before the run finished")
      }
      pf_rpc_server_info(core)
    }
  }
  invisible(follower)
}

pf_encode_values <- function(store, values, what) {
  lapply(names(values), function(name) {
    ref <- tryCatch(pf_store_value(store, name, values[[name]]), polyflow_error = function(e) {
      pf_throw_parameter(sprintf("%s '%s' cannot be stored: %s", what, name,
                                 conditionMessage(e)), parameter = name)
    })
    pf_ref_to_proto(ref)
  })
}

# Run (or resume) a flow and follow it; returns list(status, run_id).
pf_execute_run <- function(flow, options, console) {
  user <- pf_current_user()
  console$info(sprintf("Polyflow %s executing %s for user:%s", pf_package_version(), flow$name,
                       user))
  resume <- !is.null(options$origin_run)
  values <- if (resume) list() else pf_resolve_parameters(flow, options$raw_parameters)
  for (tag in options$tags) {
    if (!nzchar(trimws(tag))) pf_throw_parameter("--tag needs a non-empty value")
  }
  core <- pf_core()
  console$info("Validating your flow...")
  checked <- pf_validate(flow, options$decospecs, core = core)
  if (length(checked$problems)) {
    console$error("The graph has problems:")
    for (problem in checked$problems) console$error(pf_format_problem(problem, flow$source_file))
    return(list(status = 1L, run_id = NULL))
  }
  console$info("    The graph looks good!")

  store <- pf_client_store()
  refs <- c(pf_encode_values(store, values, "Parameter"),
            pf_encode_values(store, flow$constants, "Class constant"))
  if (resume) {
    refs <- list()
  }
  ns <- options$namespace %||% pf_get_namespace()
  request <- pf_msg("runtime.StartRunRequest", graph = checked$graph, user = user,
                    namespace = ns %||% "",
                    environment = pf_worker_environment(flow))
  request$options$max_workers <- as.integer(options$max_workers)
  request$options$max_num_splits <- as.integer(options$max_num_splits)
  request$options$max_log_size_bytes <- as.numeric(options$max_log_size) * 1048576
  if (length(refs)) request$parameter_artifacts <- refs
  if (length(options$tags)) request$tags <- unique(options$tags)
  request$system_tags <- pf_system_tags()
  if (resume) {
    request$origin_run <- options$origin_run
    if (nzchar(options$resume_step %||% "")) request$resume_step <- options$resume_step
  }
  run <- tryCatch(pf_rpc_start_run(request, core = core),
                  polyflow_error_invalid_argument = function(e) {
                    console$error(paste("Error:", conditionMessage(e)))
                    NULL
                  })
  if (is.null(run)) {
    return(list(status = 1L, run_id = NULL))
  }
  if (!is.null(options$run_id_file)) {
    writeLines(run$run_id, options$run_id_file, sep = "")
  }
  console$event(sprintf("Workflow starting (run-id %s):", run$run_id), pf_time(run, "create_time"))
  follower <- pf_follower(console)
  interrupted <- FALSE
  withCallingHandlers(
    tryCatch(pf_follow(core, run$name, follower), interrupt = function(e) interrupted <<- TRUE),
    interrupt = function(e) interrupted <<- TRUE
  )
  if (interrupted) {
    console$error(sprintf("Interrupted: cancelling run %s/%s...", flow$name, run$run_id))
    try(pf_rpc_cancel_run(run$name, "cancelled by the user (Ctrl-C)", core = core),
        silent = TRUE)
    console$error(sprintf("Run %s/%s cancelled.", flow$name, run$run_id))
    return(list(status = 1L, run_id = run$run_id))
  }
  if (follower$succeeded) {
    console$event("Done!")
    return(list(status = 0L, run_id = run$run_id))
  }
  failure <- if (nzchar(follower$failure)) follower$failure else "no reason given"
  console$error(sprintf("%s Workflow failed: %s", pf_timestamp(), failure))
  for (pathspec in follower$failed_tasks) {
    console$error(sprintf("    Step failure: task %s failed.", pathspec))
  }
  list(status = 1L, run_id = run$run_id)
}
