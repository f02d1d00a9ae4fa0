# The R task worker: runs one task attempt and reports it to the core, with the
# task contract of the Python worker (python-sdk/polyflow/_worker/):
#
# * started by the executor as `Rscript -e "polyflow:::pf_worker_main()"` with
#   POLYFLOW_TASK_SPEC naming a serialized runtime.v1.TaskSpec;
# * loads the step's function (from the R flow file, or from the R file a
#   Python flow names for one of its steps), builds `self` over the inputs'
#   artifact references (loaded lazily, straight from the store), runs the
#   step, takes the step's static transition, writes new artifact blobs into
#   the store, and reports RuntimeService.CompleteTask with a TaskOutcome;
# * exits 0 when the task succeeded and was reported, 1 when it failed or the
#   report could not be delivered, 2 without a readable TaskSpec.

pf_worker_exit <- function(status) {
  flush(stdout())
  flush(stderr())
  quit(save = "no", status = status, runLast = FALSE)
}

# Entry point of the R task worker (see the file's header).
pf_worker_main <- function() {
  path <- Sys.getenv("POLYFLOW_TASK_SPEC")
  if (!nzchar(path)) {
    cat("polyflow worker: POLYFLOW_TASK_SPEC is not set\n", file = stderr())
    pf_worker_exit(2L)
  }
  spec <- tryCatch(
    pf_parse("runtime.TaskSpec", readBin(path, "raw", n = file.size(path))),
    error = function(e) {
      cat("polyflow worker: cannot read the task spec ", path, ": ", conditionMessage(e), "\n",
          sep = "", file = stderr())
      NULL
    }
  )
  if (is.null(spec)) {
    pf_worker_exit(2L)
  }
  result <- pf_execute_task(spec)
  reported <- tryCatch({
    pf_complete_task(spec, result)
    TRUE
  }, error = function(e) {
    cat(sprintf("polyflow worker: cannot report task %s to the core at %s: %s\n",
                pf_spec_pathspec(spec), spec$core_address, conditionMessage(e)), file = stderr())
    FALSE
  })
  pf_worker_exit(if (reported && result$succeeded) 0L else 1L)
}

pf_spec_pathspec <- function(spec) {
  paste(spec$flow_name, spec$run_id, spec$step_name, spec$task_id, sep = "/")
}

pf_frames_from_proto <- function(frames) {
  lapply(frames, function(f) list(step = f$step, var = f$var, index = f$index,
                                  num_splits = f$num_splits, value_repr = f$value_repr))
}

pf_refs_from_proto <- function(artifacts) {
  refs <- lapply(artifacts, pf_ref_from_proto)
  names(refs) <- vapply(refs, function(r) r$name, "")
  refs
}

# The step's R function: from the flow file, or from the foreign R file a
# Python flow names (relative to the flow's folder).
pf_step_function <- function(spec, step) {
  if (nzchar(step$foreign_function)) {
    file <- step$foreign_file
    if (!startsWith(file, "/")) {
      file <- file.path(dirname(spec$code_path), file)
    }
    if (!file.exists(file)) {
      pf_throw("not_found", sprintf("step '%s': the R file %s does not exist", step$name, file))
    }
    env <- new.env(parent = globalenv())
    sys.source(file, envir = env, keep.source = FALSE)
    fun <- get0(step$foreign_function, envir = env, inherits = FALSE)
    if (!is.function(fun)) {
      pf_throw("not_found", sprintf("step '%s': %s defines no function %s", step$name, file,
                                    step$foreign_function))
    }
    return(fun)
  }
  flows <- pf_load_flow_file(spec$code_path)
  name <- if (nzchar(spec$graph$entrypoint)) spec$graph$entrypoint else spec$flow_name
  flow <- flows[[name]]
  if (is.null(flow)) {
    pf_throw("not_found", sprintf("%s hands no flow named %s to pf_main()", spec$code_path,
                                  name))
  }
  fun <- flow$steps[[step$name]]$fun
  if (!is.function(fun)) {
    pf_throw("not_found", sprintf("flow %s has no R function for step '%s'", name, step$name))
  }
  fun
}

pf_task_context <- function(spec) {
  list(
    flow_name = spec$flow_name, run_id = spec$run_id, step_name = spec$step_name,
    task_id = spec$task_id, retry_count = spec$attempt,
    origin_run_id = if (nzchar(spec$origin_run_id)) spec$origin_run_id else NULL,
    namespace = if (nzchar(spec$namespace)) spec$namespace else NULL,
    username = spec$user, tags = as.character(spec$tags),
    parameter_names = as.character(spec$parameter_names),
    pathspec = pf_spec_pathspec(spec)
  )
}

#' The running task
#'
#' Inside a step, `pf_current()` describes the task: `flow_name`, `run_id`,
#' `step_name`, `task_id`, `retry_count`, `origin_run_id`, `namespace`,
#' `username`, `tags`, `parameter_names` and `pathspec`.
#'
#' @param name One field; all of them when `NULL`.
#' @return The field's value, or a list of all fields. Outside a task, `NULL`.
#' @family steps
#' @export
#' @examples
#' step <- function(self) {
#'   self$made_by <- pf_current("pathspec")
#' }
#' pf_current()
pf_current <- function(name = NULL) {
  context <- pf_state$task_context
  if (is.null(name) || is.null(context)) {
    return(context)
  }
  context[[name]]
}

# Run the step function, capturing the failure's call stack.
pf_call_step <- function(fun, self, inputs) {
  if (is.null(inputs)) fun(self) else fun(self, inputs)
}

# The user's frames of a failure: those below the step's call, up to the first
# frame that runs polyflow's own code (deeper frames are the package's internals).
pf_format_calls <- function(calls, internal = rep(FALSE, length(calls))) {
  marker <- which(vapply(calls, function(call) {
    is.call(call) && endsWith(paste(deparse(call[[1L]]), collapse = ""), "pf_call_step")
  }, TRUE))
  if (!length(marker)) {
    # The failure happened before the step's function ran: no user frames.
    marker <- which(vapply(calls, function(call) {
      is.call(call) && endsWith(paste(deparse(call[[1L]]), collapse = ""), "pf_capture")
    }, TRUE))
    internal[seq_along(internal) > max(c(0L, marker))] <- TRUE
  }
  if (length(marker)) {
    keep <- seq_along(calls) > marker[[length(marker)]] + 1L
    calls <- calls[keep]
    internal <- internal[keep]
  }
  if (any(internal)) {
    calls <- calls[seq_len(which(internal)[[1L]] - 1L)]
  }
  drop <- c(".handleSimpleError", "h", "signalCondition", "withCallingHandlers", "doTryCatch",
            "tryCatchList", "tryCatchOne", "tryCatch", "stop")
  keep <- vapply(calls, function(call) {
    head <- if (is.call(call)) call[[1L]] else NULL
    !(is.name(head) && as.character(head) %in% drop)
  }, TRUE)
  vapply(calls[keep], function(call) deparse(call, width.cutoff = 100L, nlines = 1L)[[1L]], "")
}

# Whether each frame on the stack runs a function of the polyflow package.
pf_internal_frames <- function() {
  namespace <- asNamespace("polyflow")
  n <- sys.nframe() - 1L
  vapply(seq_len(n), function(i) {
    env <- environment(sys.function(i))
    !is.null(env) && identical(topenv(env), namespace)
  }, TRUE)
}

pf_exception_info <- function(condition, calls, internal = rep(FALSE, length(calls))) {
  if (inherits(condition, "polyflow_error")) {
    type <- paste0("polyflow::", condition$type)
  } else {
    type <- class(condition)[[1L]]
  }
  message <- conditionMessage(condition)
  frames <- pf_format_calls(calls, internal)
  short <- if (type == "simpleError") "Error" else sub("^.*::", "", type)
  lines <- c(
    if (length(frames)) c("Backtrace (most recent call last):", paste0("  ", frames)),
    paste0(short, ": ", message)
  )
  list(type = type, message = message, traceback = paste0(paste(lines, collapse = "\n"), "\n"),
       line = pf_one_line(paste0(short, ": ", message)))
}

pf_one_line <- function(text) {
  line <- strsplit(trimws(text), "\n", fixed = TRUE)[[1]]
  line <- if (length(line)) line[[1L]] else ""
  if (nchar(line) > 500L) paste0(substr(line, 1L, 497L), "...") else line
}

# Run `expr`; returns list(ok, value, exception) with the call stack of a failure.
pf_capture <- function(expr) {
  calls <- NULL
  internal <- NULL
  tryCatch(
    withCallingHandlers(list(ok = TRUE, value = expr), error = function(e) {
      if (is.null(calls)) {
        calls <<- sys.calls()
        internal <<- pf_internal_frames()
      }
    }),
    error = function(e) {
      frames <- calls %||% list()
      flags <- internal %||% rep(FALSE, length(frames))
      length(flags) <- length(frames)
      flags[is.na(flags)] <- TRUE
      list(ok = FALSE, exception = pf_exception_info(e, frames, flags))
    }
  )
}

pf_short_repr <- function(value) {
  text <- if (is.null(value)) "NULL" else if (is.character(value) && length(value) == 1L)
    paste0("'", value, "'") else if (is.atomic(value) && length(value) == 1L)
    format(value, digits = 15L) else paste(deparse(value, width.cutoff = 60L, nlines = 1L),
                                           collapse = "")
  if (nchar(text) > 30L) paste0(substr(text, 1L, 27L), "...") else text
}

# The transition the step takes, from the run's graph: list(next_steps,
# num_splits, value_reprs).
pf_take_transition <- function(self, step, max_num_splits) {
  state <- pf_self_state(self)
  t <- step$transition
  kinds <- pf_enum$transition
  label <- sprintf("Step '%s'", step$name)
  if (t$kind == kinds[["switch"]]) {
    var <- t$condition
    if (!pf_self_has(state, var)) {
      pf_throw("invalid_next", sprintf("%s: condition variable self$%s is not set", label, var))
    }
    value <- pf_self_get(state, var)
    keys <- vapply(t$switch_cases, function(e) e$key, "")
    targets <- vapply(t$switch_cases, function(e) e$value, "")
    spellings <- if (is.atomic(value) && length(value) == 1L && !is.na(value)) {
      if (is.logical(value)) c(as.character(value), if (value) c("True", "true") else
        c("False", "false")) else as.character(value)
    } else character()
    hit <- match(spellings, keys)
    hit <- hit[!is.na(hit)]
    if (!length(hit)) {
      pf_throw("invalid_next", sprintf(
        "%s: the value %s of self$%s matches none of the switch cases %s", label,
        pf_short_repr(value), var, paste0("'", keys, "'", collapse = ", ")
      ))
    }
    return(list(next_steps = targets[[hit[[1L]]]], num_splits = 0L, value_reprs = character()))
  }
  if (t$kind == kinds[["foreach"]]) {
    var <- t$foreach_var
    if (!pf_self_has(state, var)) {
      pf_throw("invalid_next", sprintf("%s: foreach variable self$%s is not set", label, var))
    }
    values <- pf_self_get(state, var)
    count <- if (is.data.frame(values)) nrow(values) else if (is.environment(values) ||
      is.function(values)) NA_integer_ else length(values)
    if (is.na(count)) {
      pf_throw("invalid_next", sprintf("%s: foreach variable self$%s is not a list or vector",
                                       label, var))
    }
    if (count == 0L) {
      pf_throw("invalid_next", sprintf("%s: foreach variable self$%s is empty", label, var))
    }
    if (count > max_num_splits) {
      pf_throw("task_failed", sprintf(paste0(
        "%s: foreach over self$%s makes %d splits, more than the maximum of %d; ",
        "raise it with --max-num-splits"
      ), label, var, count, max_num_splits))
    }
    reprs <- vapply(seq_len(count) - 1L, function(i) pf_short_repr(pf_foreach_item(values, i)), "")
    return(list(next_steps = as.character(t$targets), num_splits = as.integer(count),
                value_reprs = reprs))
  }
  list(next_steps = as.character(t$targets), num_splits = 0L, value_reprs = character())
}

# Run one task attempt; never raises: failures come back in the result.
pf_execute_task <- function(spec) {
  failure <- function(message, exception = NULL, artifacts = list()) {
    list(succeeded = FALSE, failure_message = pf_one_line(message), exception = exception,
         artifacts = artifacts, next_steps = character(), num_splits = 0L,
         value_reprs = character())
  }
  steps <- spec$graph$steps
  step <- NULL
  for (s in steps) if (identical(s$name, spec$step_name)) step <- s
  if (is.null(step)) {
    message <- sprintf("step '%s' is not in the flow's graph", spec$step_name)
    cat(message, "\n", sep = "", file = stderr())
    return(failure(message))
  }
  core <- if (nzchar(spec$core_address)) pf_new_core(spec$core_address, token = spec$token)
  store <- pf_store(spec$store$kind, spec$store$root, core)
  pf_state$task_context <- pf_task_context(spec)
  Sys.setenv(POLYFLOW_NAMESPACE = spec$namespace)
  if (nzchar(spec$core_address)) Sys.setenv(POLYFLOW_CORE_ADDRESS = spec$core_address)
  if (nzchar(spec$token)) Sys.setenv(POLYFLOW_CORE_TOKEN = spec$token)
  readonly <- unique(c(as.character(spec$parameter_names), as.character(spec$graph$constants)))
  inputs <- NULL
  first <- if (length(spec$inputs)) pf_refs_from_proto(spec$inputs[[1L]]$artifacts) else list()
  if (step$is_join) {
    views <- lapply(spec$inputs, function(item) {
      new_polyflow_input(item$step, item$pathspec, pf_refs_from_proto(item$artifacts), store,
                         pf_frames_from_proto(item$foreach_stack))
    })
    inputs <- new_polyflow_inputs(views)
    first <- first[names(first) %in% readonly]
  }
  self <- new_polyflow_self(spec$flow_name, spec$step_name, first, store, readonly,
                            pf_frames_from_proto(spec$foreach_stack), inputs,
                            spec$max_num_splits %||% 100L)
  decorators <- pf_step_decorators(step)
  max_splits <- if (spec$max_num_splits > 0L) spec$max_num_splits else 100L
  catch <- decorators$catch
  fallback <- !is.null(catch) && spec$attempt > spec$max_user_code_retries
  outcome <- pf_capture({
    if (fallback) {
      pf_throw("failure_handled_by_catch", sprintf(
        "Step '%s' failed on attempt %d where no exception could be caught: %s", step$name,
        spec$attempt - 1L, if (nzchar(spec$previous_failure_message))
          spec$previous_failure_message else "no reason was recorded"
      ))
    }
    fun <- pf_step_function(spec, step)
    pf_with_timeout(pf_timeout_seconds(decorators$timeout), step$name,
                    pf_call_step(fun, self, inputs))
    pf_take_transition(self, step, max_splits)
  })
  if (!is.null(catch)) {
    outcome <- pf_apply_catch(outcome, catch, self, step, spec, fallback)
  }
  problems <- character()
  artifacts <- pf_persist_self(self, function(message) problems <<- c(problems, message))
  for (line in problems) cat(line, "\n", sep = "", file = stderr())
  pf_state$task_context <- NULL
  if (!outcome$ok) {
    cat(outcome$exception$traceback, file = stderr())
    return(failure(outcome$exception$line, outcome$exception, artifacts))
  }
  if (length(problems)) {
    return(failure(problems[[1L]], NULL, artifacts))
  }
  taken <- outcome$value
  list(succeeded = TRUE, failure_message = "", exception = NULL, artifacts = artifacts,
       next_steps = taken$next_steps, num_splits = taken$num_splits,
       value_reprs = taken$value_reprs)
}

# `unsynced`: blobs went to a local store without being flushed to disk (base R
# has no fsync), so the core flushes them before recording the outcome.
pf_outcome_proto <- function(result, unsynced = FALSE) {
  outcome <- pf_msg("runtime.TaskOutcome", succeeded = result$succeeded,
                    failure_message = result$failure_message,
                    foreach_num_splits = as.integer(result$num_splits),
                    blobs_unsynced = isTRUE(unsynced))
  if (length(result$artifacts)) {
    outcome$artifacts <- unname(lapply(result$artifacts, pf_ref_to_proto))
  }
  if (length(result$next_steps)) outcome$next_steps <- result$next_steps
  if (length(result$value_reprs)) outcome$foreach_value_reprs <- result$value_reprs
  if (!is.null(result$exception)) {
    outcome$exception$type <- result$exception$type
    outcome$exception$message <- result$exception$message
    outcome$exception$traceback <- result$exception$traceback
  }
  outcome
}

# Report the result, retrying briefly while the core is unavailable.
pf_complete_task <- function(spec, result) {
  core <- pf_new_core(spec$core_address, token = spec$token)
  request <- pf_msg("runtime.CompleteTaskRequest", task = spec$task, attempt = spec$attempt,
                    outcome = pf_outcome_proto(result, identical(spec$store$kind, "local")))
  for (attempt in 0:4) {
    done <- tryCatch({
      pf_grpc_unary(core, "runtime.RuntimeService/CompleteTask", request,
                    "runtime.CompleteTaskResponse", timeout = 60)
      TRUE
    }, polyflow_error_unavailable = function(e) {
      if (attempt == 4L) stop(e)
      FALSE
    })
    if (done) {
      return(invisible(TRUE))
    }
    Sys.sleep(0.1 * 2^attempt)
  }
}

# --- Step decorators the worker applies: @catch and @timeout ----------------------------------
# (@retry, @environment and @resources act in the core, for every language.)

# A step's decorators by name, attributes decoded from JSON.
pf_step_decorators <- function(step) {
  out <- list()
  for (decorator in step$decorators) {
    attributes <- lapply(decorator$attributes, function(e) {
      jsonlite::parse_json(e$value, simplifyVector = TRUE)
    })
    names(attributes) <- vapply(decorator$attributes, function(e) e$key, "")
    out[[decorator$name]] <- attributes
  }
  out
}

pf_timeout_seconds <- function(attributes) {
  if (is.null(attributes)) {
    return(0)
  }
  number <- function(x) if (is.null(x)) 0 else as.numeric(x)
  number(attributes$seconds) + 60 * number(attributes$minutes) + 3600 * number(attributes$hours)
}

# Evaluate `expr` with an elapsed-time limit (R checks it between R operations; the
# core stops a worker stuck well past the limit).
pf_with_timeout <- function(seconds, step_name, expr) {
  if (seconds <= 0) {
    return(expr)
  }
  timed_out <- function() {
    setTimeLimit(elapsed = Inf)
    pf_throw("step_timeout", sprintf("Step '%s' timed out: it ran over its @timeout of %s s",
                                     step_name, format(seconds)), seconds = seconds)
  }
  started <- Sys.time()
  setTimeLimit(elapsed = seconds, transient = TRUE)
  on.exit(setTimeLimit(elapsed = Inf))
  value <- withCallingHandlers(expr, error = function(e) {
    if (grepl("reached elapsed time limit", conditionMessage(e), fixed = TRUE)) timed_out()
  })
  # Time spent where R does not check the limit (Sys.sleep, C code) is caught here.
  if (as.numeric(difftime(Sys.time(), started, units = "secs")) > seconds) timed_out()
  value
}

# @catch: on the last attempt of the step's code (or the core's fallback attempt), store
# the failure in `var` and take the step's static transition.
pf_apply_catch <- function(outcome, catch, self, step, spec, fallback) {
  var <- catch$var
  if (outcome$ok) {
    if (!is.null(var)) self[[var]] <- NULL
    return(outcome)
  }
  if (!fallback && spec$attempt < spec$max_user_code_retries) {
    return(outcome)
  }
  exception <- outcome$exception
  caught <- list(type = exception$type, message = exception$message,
                 traceback = if (fallback) "" else exception$traceback)
  if (!isFALSE(catch$print_exception)) {
    if (nzchar(caught$traceback)) cat(caught$traceback, file = stderr())
    where <- if (is.null(var)) "not stored (@catch has no var)" else
      sprintf("stored in self$%s", var)
    cat(sprintf("@catch caught %s in step '%s': the exception is %s and the flow goes on.\n",
                sub("^.*::", "", caught$type), step$name, where), file = stderr())
  }
  if (!is.null(var)) self[[var]] <- caught
  t <- step$transition
  list(ok = TRUE, value = list(next_steps = as.character(t$targets), num_splits = 0L,
                               value_reprs = character()))
}
