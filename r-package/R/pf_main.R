#' The command line of a flow file
#'
#' End a flow script with `pf_main(flow)`: `Rscript flow.R <command>` then
#' runs the flow's command line, as `python flow.py <command>` does for a
#' Python flow, with the same messages, progress output and exit statuses.
#'
#' Commands:
#' * `run [--<parameter> VALUE ...] [--max-workers N] [--max-num-splits N]
#'   [--max-log-size MB] [--tag TAG ...] [--run-id-file FILE]
#'   [--namespace NS]`: run the flow (exit status 0 when the run succeeds);
#' * `resume [STEP] [--origin-run-id ID]`: run again from the failed (or the
#'   given) step of an earlier run, cloning what succeeded;
#' * `check`: check the graph against the core's rules;
#' * `show`: print the steps with their kinds and edges;
#' * `logs RUN/STEP[/TASK] [--stdout|--stderr] [--attempt N]`: print what
#'   tasks printed;
#' * `tag add|remove [--run-id ID] [--namespace NS] TAG...`,
#'   `tag replace [--run-id ID] [--namespace NS] --add TAG --remove TAG`:
#'   change the user tags of a run (system tags such as `user:<name>` never
#'   change). `--run-id` is required (the error names the latest run); the run
#'   is looked for in the current namespace, or in `--namespace` (an empty
#'   value: every namespace). The run's tags are printed afterwards;
#' * `tag list [RUN_ID] [--run-id ID] [--all | --my-runs] [--hide-system-tags]
#'   [--group-by-tag | --group-by-run | --flat]`: list the tags of every run of
#'   the flow (or of one run, or of your runs). With `--quiet` each group is
#'   one line, `<runs> ; <system tags> ; <user tags>` (or `user:<tag> ; <runs>`
#'   with `--group-by-tag`);
#' * `dump RUN/STEP[/TASK] [--private] [--max-value-size N] [--include NAMES]
#'   [--file FILE]`: print the artifacts of a task, or of every task of a
#'   step, one line each: `name [size: N type: T] = <value>`, where `N` is the
#'   stored size in bytes, `T` the recorded type (an R class, or a Python type
#'   for values written by Python) and the value a one-line [deparse()] of the
#'   R value, cut to `--max-value-size` characters (default 1000; values stored
#'   in more bytes are not loaded; 0 prints names only). Values written by
#'   Python are converted by the core; one without an R counterpart prints as
#'   `<cannot load: ...>`. `--file FILE` prints nothing and writes every
#'   selected value, uncut, to the `.rds` file `FILE` instead (read it with
#'   [readRDS()]): a named list with one element per task, named
#'   `"run_id/step/task_id"`, each a named list of the task's values, as in
#'   `list("12/start/1" = list(x = 1, y = "a"))`. It is R's counterpart of the
#'   pickle `python flow.py dump --file` writes;
#' * `help`: the help of every command.
#'
#' Options before the command: `--quiet` (print only task output and
#' failures) and `--with SPEC` (attach a decorator, `name:attr=value,...`, to
#' every step).
#'
#' When the file is loaded by a task worker, `pf_main()` only hands the flow
#' over and returns.
#'
#' @param flow The flow.
#' @param args The command line (by default the script's arguments).
#' @param exit Whether to end the R process with the command's exit status
#'   (the default when not interactive).
#' @return The exit status, invisibly (when `exit` is `FALSE`).
#' @family running
#' @export
#' @examples
#' flow <- pf_flow("HelloFlow") |>
#'   pf_step("start", function(self) self$x <- 1L, next_step = "end") |>
#'   pf_step("end", function(self) NULL)
#' pf_main(flow, "--help", exit = FALSE)
pf_main <- function(flow, args = commandArgs(trailingOnly = TRUE), exit = !interactive()) {
  pf_assert_class(flow, "polyflow_flow", "flow")
  if (!nzchar(flow$source_file)) {
    flow$source_file <- pf_script_file()
  }
  if (isTRUE(pf_state$loading_flow)) {
    pf_state$loaded_flows[[flow$name]] <- flow
    return(invisible(0L))
  }
  status <- tryCatch(
    pf_cli(flow, as.character(args)),
    polyflow_error = function(e) {
      cat("Error: ", conditionMessage(e), "\n", sep = "", file = stderr())
      1L
    }
  )
  if (exit) {
    quit(save = "no", status = status)
  }
  invisible(status)
}

# The file Rscript runs (--file=...), absolute; "" in an interactive session.
pf_script_file <- function() {
  args <- commandArgs(trailingOnly = FALSE)
  file <- sub("^--file=", "", args[startsWith(args, "--file=")])
  if (!length(file)) {
    return("")
  }
  normalizePath(gsub("~+~", " ", file[[1L]], fixed = TRUE), mustWork = FALSE)
}

pf_usage <- function(flow) {
  prog <- if (nzchar(flow$source_file)) basename(flow$source_file) else flow$name
  paste0(
    "Usage: Rscript ", prog, " [--quiet] [--with SPEC] COMMAND [ARGS]...\n\n",
    if (nzchar(flow$doc)) paste0("  ", flow$doc, "\n\n") else
      paste0("  The ", flow$name, " flow.\n\n"),
    "Options:\n",
    "  --quiet / --not-quiet  Print only task output and failures.\n",
    "  --with SPEC            Attach a decorator to every step: name or\n",
    "                         name:attr=value,attr=value.\n",
    "  -h, --help             Show this message and exit.\n\n",
    "Commands:\n",
    "  check   Check that the flow's graph is valid.\n",
    "  dump    Show the artifacts of a task, or of every task of a step.\n",
    "  help    Show the help of every command.\n",
    "  logs    Show what a run's tasks printed.\n",
    "  resume  Resume a run: clone what succeeded, run the rest.\n",
    "  run     Run the flow.\n",
    "  show    Show the flow's steps, their kinds, decorators and edges.\n",
    "  tag     Change or list the user tags of runs; system tags are fixed.\n"
  )
}

pf_run_usage <- function(flow) {
  prog <- if (nzchar(flow$source_file)) basename(flow$source_file) else flow$name
  lines <- c(
    paste0("Usage: Rscript ", prog, " run [OPTIONS]"), "", "  Run the flow.", "", "Options:",
    "  --max-workers INTEGER     Tasks that may run at once.  [default: 16]",
    "  --max-num-splits INTEGER  Most splits one foreach may create.  [default: 100]",
    "  --max-log-size INTEGER    Most MB of stdout and of stderr stored per task.  [default: 10]",
    "  --tag TEXT                A tag for the run (repeatable).",
    "  --run-id-file FILE        Write the run id to this file as soon as the run exists.",
    "  --namespace TEXT          The client namespace of the run's tasks; an empty value means global."
  )
  metavars <- c(str = "TEXT", int = "INTEGER", float = "FLOAT", bool = "BOOLEAN", json = "JSON")
  for (param in flow$parameters) {
    help <- param$help
    if (!is.null(param$separator)) help <- paste0(help, " Split into a list on '", param$separator, "'.")
    if (param$required) {
      help <- paste(help, "[required]")
    } else if (!is.null(param$default)) {
      help <- paste0(help, " [default: ", pf_parameter_default_json(param), "]")
    }
    help <- paste0(help, " [env: ", pf_parameter_env_var(param$name), "]")
    lines <- c(lines, sprintf("  --%s %s  %s", param$name, metavars[[param$type]], trimws(help)))
  }
  paste0(paste(c(lines, "  -h, --help                Show this message and exit."),
               collapse = "\n"), "\n")
}

# Parse "name" or "name:attr=value,attr=value" (values read as JSON when they parse).
pf_parse_decospec <- function(spec) {
  parts <- regmatches(spec, regexpr(":", spec), invert = TRUE)[[1]]
  name <- trimws(parts[[1L]])
  attributes <- list()
  if (length(parts) == 2L && nzchar(trimws(parts[[2L]]))) {
    items <- strsplit(parts[[2L]], ",(?=\\s*[A-Za-z_][A-Za-z0-9_]*\\s*=)", perl = TRUE)[[1]]
    for (item in items) {
      kv <- regmatches(item, regexpr("=", item), invert = TRUE)[[1]]
      if (length(kv) != 2L) {
        pf_throw_invalid_argument(sprintf("invalid decorator spec '%s': expected attr=value", spec))
      }
      value <- tryCatch(jsonlite::parse_json(trimws(kv[[2L]]), simplifyVector = TRUE),
                        error = function(e) trimws(kv[[2L]]))
      attributes[[trimws(kv[[1L]])]] <- value
    }
  }
  do.call(pf_decorator, c(list(name), attributes))
}

# Split "--name value" / "--name=value" options; returns list(options, positional).
pf_parse_options <- function(args, flags = character(), repeatable = character()) {
  options <- list()
  positional <- character()
  i <- 1L
  while (i <= length(args)) {
    arg <- args[[i]]
    if (startsWith(arg, "--") && nchar(arg) > 2L) {
      body <- substring(arg, 3L)
      if (grepl("=", body, fixed = TRUE)) {
        key <- sub("=.*$", "", body)
        value <- sub("^[^=]*=", "", body)
      } else if (body %in% flags) {
        key <- body
        value <- "true"
      } else {
        key <- body
        if (i == length(args)) {
          pf_throw("usage", sprintf("Option '--%s' requires an argument.", key))
        }
        i <- i + 1L
        value <- args[[i]]
      }
      if (key %in% repeatable) {
        options[[key]] <- c(options[[key]], value)
      } else {
        options[[key]] <- value
      }
    } else if (arg %in% c("-h")) {
      options[["help"]] <- "true"
    } else {
      positional <- c(positional, arg)
    }
    i <- i + 1L
  }
  list(options = options, positional = positional)
}

pf_cli <- function(flow, args) {
  quiet <- FALSE
  decospecs <- list()
  while (length(args) && startsWith(args[[1L]], "-")) {
    arg <- args[[1L]]
    if (arg %in% c("--quiet", "--not-quiet")) {
      quiet <- arg == "--quiet"
      args <- args[-1L]
    } else if (arg == "--with" && length(args) >= 2L) {
      decospecs <- c(decospecs, list(pf_parse_decospec(args[[2L]])))
      args <- args[-(1:2)]
    } else if (startsWith(arg, "--with=")) {
      decospecs <- c(decospecs, list(pf_parse_decospec(sub("^--with=", "", arg))))
      args <- args[-1L]
    } else if (arg %in% c("-h", "--help")) {
      cat(pf_usage(flow))
      return(0L)
    } else {
      cat(pf_usage(flow), "\nError: No such option: ", arg, "\n", sep = "", file = stderr())
      return(2L)
    }
  }
  if (!length(args)) {
    cat(pf_usage(flow))
    return(0L)
  }
  command <- args[[1L]]
  rest <- args[-1L]
  console <- pf_console(quiet)
  result <- tryCatch(
    switch(command,
      run = pf_cli_run(flow, rest, console, decospecs),
      resume = pf_cli_resume(flow, rest, console, decospecs),
      check = pf_cli_check(flow, rest, console, decospecs),
      show = pf_cli_show(flow, rest, decospecs),
      logs = pf_cli_logs(flow, rest, console),
      tag = pf_cli_tag(flow, rest, console),
      dump = pf_cli_dump(flow, rest, console),
      help = {
        cat(pf_usage(flow), "\n", pf_run_usage(flow), "\n", pf_tag_usage(flow), "\n",
            pf_dump_usage(flow), sep = "")
        0L
      },
      {
        cat(pf_usage(flow), "\nError: No such command '", command, "'.\n", sep = "",
            file = stderr())
        2L
      }
    ),
    polyflow_error_usage = function(e) {
      cat("Error: ", conditionMessage(e), "\n", sep = "", file = stderr())
      2L
    },
    polyflow_error_parameter = function(e) {
      console$error(paste("Error:", conditionMessage(e)))
      1L
    }
  )
  as.integer(result)
}

pf_run_option_names <- c("max-workers", "max-num-splits", "max-log-size", "tag", "run-id-file",
                         "namespace", "help")

pf_run_options <- function(flow, rest, decospecs, quiet) {
  parsed <- pf_parse_options(rest, flags = "help", repeatable = "tag")
  opts <- parsed$options
  if (length(parsed$positional)) {
    pf_throw("usage", sprintf("Got unexpected extra argument (%s)", parsed$positional[[1L]]))
  }
  params <- names(flow$parameters)
  unknown <- setdiff(names(opts), c(pf_run_option_names, params))
  if (length(unknown)) {
    pf_throw("usage", sprintf("No such option: --%s", unknown[[1L]]))
  }
  count <- function(key, default) {
    value <- opts[[key]]
    if (is.null(value)) {
      return(default)
    }
    number <- suppressWarnings(as.integer(value))
    if (is.na(number) || number < 1L) {
      pf_throw("usage", sprintf("Invalid value for '--%s': '%s' is not a whole number >= 1",
                                key, value))
    }
    number
  }
  list(
    max_workers = count("max-workers", 16L), max_num_splits = count("max-num-splits", 100L),
    max_log_size = count("max-log-size", 10L), tags = opts[["tag"]] %||% character(),
    run_id_file = opts[["run-id-file"]], namespace = opts[["namespace"]],
    decospecs = decospecs, quiet = quiet, raw_parameters = opts[intersect(names(opts), params)],
    help = !is.null(opts[["help"]])
  )
}

pf_cli_run <- function(flow, rest, console, decospecs) {
  options <- pf_run_options(flow, rest, decospecs, console$quiet)
  if (options$help) {
    cat(pf_run_usage(flow))
    return(0L)
  }
  pf_execute_run(flow, options, console)$status
}

pf_cli_resume <- function(flow, rest, console, decospecs) {
  parsed <- pf_parse_options(rest, flags = "help", repeatable = "tag")
  opts <- parsed$options
  if (!is.null(opts[["help"]])) {
    cat("Usage: Rscript ", basename(flow$source_file), " resume [STEP] [OPTIONS]\n\n",
        "  Resume the latest run (or --origin-run-id): clone what succeeded, run the rest\n",
        "  (from STEP on when given).\n", sep = "")
    return(0L)
  }
  origin <- opts[["origin-run-id"]]
  if (is.null(origin)) {
    runs <- pf_rpc_list_runs(paste0("flows/", flow$name))
    ns <- pf_get_namespace()
    runs <- Filter(function(r) is.null(ns) || ns %in% c(r$tags, r$system_tags), runs)
    if (!length(runs)) {
      console$error(sprintf("Error: no earlier run of %s to resume", flow$name))
      return(1L)
    }
    origin <- runs[[1L]]$run_id
  }
  opts[["origin-run-id"]] <- NULL
  options <- pf_run_options(flow, unlist(lapply(names(opts), function(k) {
    vals <- opts[[k]]
    as.vector(rbind(paste0("--", k), vals))
  })), decospecs, console$quiet)
  options$origin_run <- sprintf("flows/%s/runs/%s", flow$name, origin)
  options$resume_step <- if (length(parsed$positional)) parsed$positional[[1L]] else ""
  pf_execute_run(flow, options, console)$status
}

pf_cli_check <- function(flow, rest, console, decospecs) {
  console$info("Validating your flow...")
  checked <- pf_validate(flow, decospecs)
  if (length(checked$problems)) {
    for (problem in checked$problems) console$error(pf_format_problem(problem, flow$source_file))
    return(1L)
  }
  cat("    The graph looks good!\n")
  0L
}

pf_cli_show <- function(flow, rest, decospecs) {
  checked <- pf_validate(flow, decospecs)
  cat(pf_show_text(checked$derived %||% checked$graph))
  if (length(checked$problems)) {
    cat("The graph has problems:\n", file = stderr())
    for (problem in checked$problems) {
      cat(pf_format_problem(problem, flow$source_file), "\n", sep = "", file = stderr())
    }
  }
  0L
}

pf_cli_logs <- function(flow, rest, console = pf_console()) {
  if (length(rest) && rest[[1L]] == "show") {
    rest <- rest[-1L]  # `logs PATHSPEC` is short for `logs show PATHSPEC`
  }
  parsed <- pf_parse_options(rest, flags = c("stdout", "stderr", "both", "help"))
  opts <- parsed$options
  if (!is.null(opts[["help"]]) || length(parsed$positional) != 1L) {
    cat("Usage: Rscript ", basename(flow$source_file),
        " logs [show] RUN_ID/STEP[/TASK_ID] [--stdout] [--stderr] [--both] [--attempt N]\n\n",
        "  Show the stdout and stderr of a task, or of every task of a step.\n", sep = "")
    return(if (is.null(opts[["help"]])) 2L else 0L)
  }
  parts <- strsplit(parsed$positional[[1L]], "/", fixed = TRUE)[[1]]
  if (length(parts) < 2L || length(parts) > 3L || !all(nzchar(parts))) {
    pf_throw("usage", "logs takes RUN_ID/STEP or RUN_ID/STEP/TASK_ID")
  }
  streams <- c("stdout", "stderr")[c(!is.null(opts[["stdout"]]), !is.null(opts[["stderr"]]))]
  if (!length(streams)) streams <- c("stdout", "stderr")
  attempt <- if (is.null(opts[["attempt"]])) NULL else as.integer(opts[["attempt"]])
  step_path <- paste(c(flow$name, parts[1:2]), collapse = "/")
  tasks <- if (length(parts) == 3L) {
    list(pf_as_task(pf_rpc_get_task(pf_resource_name(paste(step_path, parts[[3L]], sep = "/")))))
  } else {
    lapply(pf_rpc_list_tasks(pf_resource_name(step_path)), pf_as_task)
  }
  if (!length(tasks)) {
    console$error(sprintf("Error: Step %s has no task.", step_path))
    return(1L)
  }
  skipped <- character()
  for (task in tasks) {
    made <- task$attempt_count
    if (made == 0L) {
      skipped <- c(skipped, sprintf("Task %s has not started yet: it has no logs.", task$pathspec))
      next
    }
    if (!is.null(attempt) && attempt >= made) {
      skipped <- c(skipped, sprintf(
        "Task %s has no attempt %d: it made %d attempt%s, numbered from 0.", task$pathspec,
        attempt, made, if (made > 1L) "s" else ""
      ))
      next
    }
    number <- attempt %||% (made - 1L)
    running <- if (number == made - 1L && !task$finished) " (still running: the output so far)"
      else ""
    console$info(sprintf("Logs of task %s, attempt %d%s", task$pathspec, number, running))
    for (stream in streams) {
      text <- pf_rpc_read_log(task$name, stream, number)
      if (nzchar(text)) {
        console$info(paste0(stream, ":"))
        cat(text, if (!endsWith(text, "\n")) "\n", sep = "")
        flush(stdout())
      } else {
        console$info(paste0(stream, ": (empty)"))
      }
    }
  }
  if (length(skipped) == length(tasks)) {
    console$error(paste0("Error: ", paste(skipped, collapse = "\n")))
    return(1L)
  }
  for (line in skipped) console$info(line)
  0L
}

#' Run a flow from R
#'
#' `pf_run()` runs a flow as `Rscript flow.R run` would, from an R session
#' (the flow's functions must then be defined in a file, [pf_main()] being
#' its last line, for the task workers to load). Parameters are given as
#' arguments.
#'
#' @param flow The flow (its `source_file` must name the flow's file).
#' @param ... Parameter values, by name.
#' @param max_workers,max_num_splits Execution bounds.
#' @param tags Tags for the run.
#' @param quiet Print only task output and failures.
#' @return A list with `status` (0 on success) and `run_id`.
#' @family running
#' @export
#' @examples
#' \dontrun{
#' flow <- pf_flow_from_file("helloworld.R")
#' pf_run(flow)
#' }
pf_run <- function(flow, ..., max_workers = 16L, max_num_splits = 100L, tags = character(),
                   quiet = FALSE) {
  pf_assert_class(flow, "polyflow_flow", "flow")
  if (!nzchar(flow$source_file) || !file.exists(flow$source_file)) {
    pf_throw_invalid_argument("the flow has no source file; load it with pf_flow_from_file()")
  }
  values <- list(...)
  raw <- lapply(values, function(v) {
    if (is.character(v) && length(v) == 1L) v else if (is.logical(v)) tolower(as.character(v))
    else if (pf_json_exact(v)) pf_to_json(v) else as.character(v)
  })
  options <- list(max_workers = max_workers, max_num_splits = max_num_splits, max_log_size = 10L,
                  tags = tags, run_id_file = NULL, namespace = NULL, decospecs = list(),
                  quiet = quiet, raw_parameters = raw)
  pf_execute_run(flow, options, pf_console(quiet))
}

#' Load a flow from its file
#'
#' Sources the flow file without running its command line and returns the
#' flow object that [pf_main()] received.
#'
#' @param file The flow's file.
#' @param name The flow's name, when the file defines several.
#' @return The flow.
#' @family running
#' @export
#' @examples
#' \dontrun{
#' flow <- pf_flow_from_file("helloworld.R")
#' }
pf_flow_from_file <- function(file, name = NULL) {
  path <- normalizePath(file, mustWork = TRUE)
  flows <- pf_load_flow_file(path)
  if (!length(flows)) {
    pf_throw_not_found(sprintf("%s hands no flow to pf_main()", path))
  }
  flow <- if (is.null(name)) flows[[1L]] else flows[[name]]
  if (is.null(flow)) {
    pf_throw_not_found(sprintf("%s defines no flow named %s", path, name))
  }
  flow$source_file <- path
  flow
}

# Source a flow file with pf_main() only collecting flows; returns them by name.
pf_load_flow_file <- function(path, envir = new.env(parent = globalenv())) {
  old <- pf_state$loading_flow
  pf_state$loading_flow <- TRUE
  pf_state$loaded_flows <- list()
  on.exit(pf_state$loading_flow <- old)
  sys.source(path, envir = envir, keep.source = FALSE)
  flows <- pf_state$loaded_flows
  for (i in seq_along(flows)) {
    flows[[i]]$source_file <- path
  }
  flows
}
