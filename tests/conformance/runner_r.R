# The R runner of the conformance vectors (the spec is README.md in this folder).
#
# It does for the R package what runner_python.py does for the Python SDK:
#
# - generate: turn a vector into a readable R flow file (pf_flow() |> pf_step() ...);
# - run: in a fresh project folder with its own root, run the flow with
#   `Rscript flow.R run --run-id-file FILE <run_args>` (which starts a private
#   daemon), read the run back through the R client API, check it against the
#   vector's `expect` with the README's rules (section 4), stop the daemon;
# - observe / check: the two halves of that, for debugging.
#
# Usage:
#   Rscript runner_r.R generate VECTOR.json [-o flow.R]
#   Rscript runner_r.R run VECTOR.json [--project DIR] [--observation FILE]
#   Rscript runner_r.R observe VECTOR.json RUN_ID --out FILE
#   Rscript runner_r.R check VECTOR.json OBSERVATION.json EXIT_CODE
#   Rscript runner_r.R all [VECTOR.json ...]       (default: every vector)
#
# `run` and `all` exit 0 when every vector is conformant, 1 otherwise, and print
# every mismatch. The environment must let Rscript find the installed R
# package (R_LIBS) and the daemon's Python (POLYFLOW_PYTHON or polyflow-core on
# PATH).

suppressPackageStartupMessages({
  library(polyflow)
  library(jsonlite)
})

runner_dir <- function() {
  args <- commandArgs(trailingOnly = FALSE)
  file <- sub("^--file=", "", args[startsWith(args, "--file=")])
  if (length(file)) dirname(normalizePath(file[[1L]])) else getwd()
}

`%||%` <- function(x, y) if (is.null(x)) y else x

load_vector <- function(path) {
  jsonlite::read_json(path, simplifyVector = FALSE)
}

flow_class_name <- function(vector_name) {
  parts <- strsplit(vector_name, "_", fixed = TRUE)[[1]]
  parts <- parts[nzchar(parts)]
  paste0(paste0(toupper(substr(parts, 1L, 1L)), substring(parts, 2L), collapse = ""), "Flow")
}

# --------------------------------------------------------------------------------------------
# Generating an R flow

# A JSON value (as jsonlite parses it, simplifyVector = FALSE) as R source.
r_literal <- function(value) {
  if (is.null(value)) {
    return("NULL")
  }
  if (is.list(value)) {
    keys <- names(value)
    if (is.null(keys)) {
      return(paste0("list(", paste(vapply(value, r_literal, ""), collapse = ", "), ")"))
    }
    if (!length(value)) {
      return("setNames(list(), character(0))")
    }
    items <- vapply(seq_along(value), function(i) {
      key <- keys[[i]]
      if (make.names(key) != key) key <- paste0("`", key, "`")
      paste0(key, " = ", r_literal(value[[i]]))
    }, "")
    return(paste0("list(", paste(items, collapse = ", "), ")"))
  }
  if (is.logical(value)) {
    return(if (value) "TRUE" else "FALSE")
  }
  if (is.integer(value)) {
    return(paste0(value, "L"))
  }
  if (is.double(value)) {
    text <- format(value, digits = 17L)
    for (digits in 15:17) {
      text <- formatC(value, digits = digits, format = "g")
      if (as.numeric(text) == value) break
    }
    if (!grepl("[.e]", text)) text <- paste0(text, ".0")
    return(text)
  }
  encodeString(value, quote = "\"")
}

operand <- function(value) {
  if (is.character(value)) paste0("self$", value) else r_literal(value)
}

render_action <- function(action) {
  kind <- names(action)[[1L]]
  body <- action[[1L]]
  switch(kind,
    set = vapply(names(body), function(name) {
      paste0("self$", name, " <- ", r_literal(body[[name]]))
    }, ""),
    copy = sprintf("self$%s <- self$%s", body$to, body$from),
    param = sprintf("self$%s <- self$%s", body$to, body$name),
    input = sprintf("self$%s <- self$input", body),
    index = sprintf("self$%s <- self$index", body),
    foreach_stack = sprintf(
      "self$%s <- lapply(pf_foreach_stack(self), function(frame) list(frame$index, frame$num_splits))",
      body
    ),
    add = sprintf("self$%s <- %s", body$to,
                  paste(vapply(body$args, operand, ""), collapse = " + ")),
    multiply = sprintf("self$%s <- %s", body$to,
                       paste(vapply(body$args, operand, ""), collapse = " * ")),
    square = sprintf("self$%s <- %s * %s", body$to, operand(body$arg), operand(body$arg)),
    increment = sprintf("self$%s <- self$%s + 1L", body, body),
    compare = {
      stopifnot(body$op %in% c("<", "<=", "==", "!=", ">=", ">"))
      sprintf("self$%s <- if (%s %s %s) %s else %s", body$to, operand(body$left), body$op,
              operand(body$right), r_literal(body[["then"]]), r_literal(body[["else"]]))
    },
    sum = sprintf("self$%s <- Reduce(`+`, pf_gather(inputs, %s), 0L)", body$to,
                  r_literal(body$attr)),
    collect = sprintf("self$%s <- pf_gather(inputs, %s)", body$to, r_literal(body$attr)),
    from_branch = sprintf("self$%s <- inputs$%s$%s", body$to, body$branch, body$attr),
    merge_artifacts = {
      extra <- ""
      for (key in c("include", "exclude")) {
        if (!is.null(body[[key]])) {
          names <- vapply(body[[key]], r_literal, "")
          extra <- paste0(extra, ", ", key, " = c(", paste(names, collapse = ", "), ")")
        }
      }
      sprintf("pf_merge_artifacts(self, inputs%s)", extra)
    },
    raise = sprintf("stop(errorCondition(%s, class = %s))", r_literal(body$message),
                    r_literal(body$type)),
    print = sprintf("writeLines(%s)", r_literal(body)),
    stop("unknown action ", kind)
  )
}

render_next <- function(nxt) {
  if (!is.null(nxt$linear)) {
    return(sprintf("next_step = %s", r_literal(nxt$linear)))
  }
  if (!is.null(nxt$branch)) {
    return(sprintf("next_step = c(%s)", paste(vapply(nxt$branch, r_literal, ""), collapse = ", ")))
  }
  if (!is.null(nxt$foreach)) {
    return(sprintf("next_step = %s, foreach = %s", r_literal(nxt$foreach), r_literal(nxt$var)))
  }
  cases <- vapply(names(nxt$switch), function(key) {
    label <- if (make.names(key) == key) key else encodeString(key, quote = "\"")
    paste0(label, " = ", r_literal(nxt$switch[[key]]))
  }, "")
  sprintf("switch = c(%s), condition = %s", paste(cases, collapse = ", "),
          r_literal(nxt$condition))
}

render_step <- function(step) {
  args <- if (isTRUE(step$join)) "self, inputs" else "self"
  body <- unlist(lapply(step$actions, render_action))
  if (!length(body)) body <- "NULL"
  options <- character()
  if (!is.null(step$`next`)) options <- c(options, render_next(step$`next`))
  if (isTRUE(step$start)) options <- c(options, "start = TRUE")
  if (isTRUE(step$end)) options <- c(options, "end = TRUE")
  tail <- if (length(options)) paste0(", ", paste(options, collapse = ", ")) else ""
  c(
    sprintf("  pf_step(%s, function(%s) {", r_literal(step$name), args),
    paste0("    ", body),
    sprintf("  }%s)", tail)
  )
}

render_parameter <- function(param) {
  default <- param$default
  if (param$type == "int") default <- as.integer(default)
  if (param$type == "float") default <- as.numeric(default)
  sprintf("  pf_parameter(%s, type = %s, default = %s, help = %s)", r_literal(param$name),
          r_literal(param$type), r_literal(default), r_literal(param$help))
}

generate_flow <- function(vector) {
  name <- flow_class_name(vector$name)
  pieces <- c(
    sprintf("# Flow of conformance vector %s: generated by runner_r.R, do not edit.", vector$name),
    paste0("# ", strwrap(vector$description, 90L)),
    "",
    "library(polyflow)",
    "",
    sprintf("flow <- pf_flow(%s, doc = %s)", r_literal(name), r_literal(vector$description))
  )
  chain <- character()
  for (key in names(vector$constants)) {
    chain <- c(chain, sprintf("  pf_constant(%s, %s)", r_literal(key),
                              r_literal(vector$constants[[key]])))
  }
  for (param in vector$parameters) {
    chain <- c(chain, render_parameter(param))
  }
  for (step in vector$steps) {
    chain <- c(chain, paste(render_step(step), collapse = "\n"))
  }
  if (length(chain)) {
    pieces[[length(pieces)]] <- paste0(pieces[[length(pieces)]], " |>")
    chain[-length(chain)] <- paste0(chain[-length(chain)], " |>")
  }
  paste0(paste(c(pieces, chain, "", "pf_main(flow)"), collapse = "\n"), "\n")
}

# --------------------------------------------------------------------------------------------
# Observing a run through the R client API

wanted_artifacts <- function(vector) {
  wanted <- list()
  add <- function(step, names) wanted[[step]] <<- unique(c(wanted[[step]], names))
  expect <- vector$expect
  for (step in names(expect$artifacts)) add(step, names(expect$artifacts[[step]]))
  for (step in names(expect$absent)) add(step, unlist(expect$absent[[step]]))
  for (step in names(expect$tasks)) {
    for (entry in expect$tasks[[step]]) {
      add(step, c(names(entry$where), names(entry$artifacts), unlist(entry$absent)))
    }
  }
  wanted
}

stdout_steps <- function(vector) {
  expect <- vector$expect
  steps <- names(expect$stdout)
  for (step in names(expect$tasks)) {
    if (any(vapply(expect$tasks[[step]], function(e) !is.null(e$stdout), TRUE))) {
      steps <- c(steps, step)
    }
  }
  unique(steps)
}

# An R value as JSON-able data: length-one vectors are scalars, other vectors
# and unnamed lists arrays, named lists objects.
to_json_value <- function(value) {
  if (is.null(value)) {
    return(NULL)
  }
  if (is.data.frame(value) || is.environment(value) || is.function(value) ||
      (is.object(value) && !is.list(value))) {
    return(list(`__not_json__` = class(value)[[1L]],
                repr = paste(utils::capture.output(print(value)), collapse = "\n")))
  }
  if (is.atomic(value)) {
    items <- lapply(seq_along(value), function(i) if (is.na(value[[i]])) NULL else value[[i]])
    if (length(value) == 1L && is.null(names(value))) {
      return(items[[1L]])
    }
    value <- stats::setNames(items, names(value))
  }
  out <- lapply(value, to_json_value)
  if (!is.null(names(value))) names(out) <- names(value)
  out
}

short_type <- function(type) sub("^.*[.:]", "", type)

failure_texts_of_task <- function(task) {
  texts <- character()
  error <- task$exception
  if (!is.null(error) && (nzchar(error$type) || nzchar(error$message))) {
    if (nzchar(error$type)) {
      texts <- c(texts, sprintf("%s: %s", short_type(error$type), error$message))
    }
    texts <- c(texts, if (nzchar(error$traceback)) error$traceback else error$message)
  }
  if (nzchar(task$failure_message)) texts <- c(texts, task$failure_message)
  texts
}

observe_task <- function(task, names, want_stdout) {
  record <- list(id = task$id, index = task$index, successful = task$successful)
  artifacts <- list()
  for (name in names) {
    artifacts[[name]] <- tryCatch(
      list(value = to_json_value(pf_data(task, name))),
      error = function(e) list(missing = paste0(class(e)[[1L]], ": ", conditionMessage(e)))
    )
  }
  record$artifacts <- if (length(artifacts)) artifacts else setNames(list(), character(0))
  if (want_stdout) {
    record$stdout <- tryCatch(pf_stdout(task), error = function(e) {
      record$stdout_error <<- conditionMessage(e)
      NULL
    })
  }
  if (!isTRUE(task$successful)) {
    record$failure <- as.list(failure_texts_of_task(task))
    stderr <- tryCatch(pf_stderr(task), error = function(e) "")
    record$stderr <- substring(stderr, max(1L, nchar(stderr) - 3999L))
  }
  record
}

observe <- function(vector, run_id) {
  pf_namespace(NULL)
  pathspec <- paste(flow_class_name(vector$name), run_id, sep = "/")
  run <- pf_get_run(pathspec)
  observation <- list(
    pathspec = pathspec,
    run = list(successful = run$successful, finished = run$finished,
               failure = as.list(if (nzchar(run$failure_message)) run$failure_message
                                 else character())),
    steps = list()
  )
  wanted <- wanted_artifacts(vector)
  with_stdout <- stdout_steps(vector)
  for (step in vector$steps) {
    name <- step$name
    entry <- list(tasks = list())
    step_object <- tryCatch(pf_get_step(run, name), error = function(e) {
      entry$lookup_error <<- paste0(class(e)[[1L]], ": ", conditionMessage(e))
      NULL
    })
    if (!is.null(step_object)) {
      for (task in pf_list_tasks(step_object)) {
        entry$tasks[[length(entry$tasks) + 1L]] <-
          observe_task(task, wanted[[name]] %||% character(), name %in% with_stdout)
      }
    }
    observation$steps[[name]] <- entry
  }
  observation
}

write_json_file <- function(value, path) {
  writeLines(jsonlite::toJSON(value, auto_unbox = TRUE, null = "null", digits = NA,
                              pretty = TRUE), path)
}

# --------------------------------------------------------------------------------------------
# Checking an observation against `expect` (README, section 4)

is_number <- function(x) (is.integer(x) || is.double(x)) && length(x) == 1L

values_equal <- function(expected, actual) {
  if (is.logical(expected) || is.logical(actual)) {
    return(is.logical(expected) && is.logical(actual) && length(expected) == 1L &&
             length(actual) == 1L && identical(expected, actual))
  }
  if (is.null(expected) || is.null(actual)) {
    return(is.null(expected) && is.null(actual))
  }
  if (is_number(expected)) {
    if (!is_number(actual)) return(FALSE)
    if (is.integer(expected) && is.integer(actual)) return(expected == actual)
    return(isTRUE(abs(expected - actual) <= max(1e-9 * max(abs(expected), abs(actual)), 1e-12)))
  }
  if (is.character(expected)) {
    return(is.character(actual) && length(actual) == 1L && identical(expected, actual))
  }
  if (is.list(expected) && is.null(names(expected))) {
    return(is.list(actual) && is.null(names(actual)) && length(expected) == length(actual) &&
             all(vapply(seq_along(expected), function(i) values_equal(expected[[i]], actual[[i]]),
                        TRUE)))
  }
  if (is.list(expected)) {
    return(is.list(actual) && !is.null(names(actual)) &&
             setequal(names(expected), names(actual)) && length(expected) == length(actual) &&
             all(vapply(names(expected), function(k) values_equal(expected[[k]], actual[[k]]),
                        TRUE)))
  }
  FALSE
}

show_value <- function(value) {
  as.character(jsonlite::toJSON(value, auto_unbox = TRUE, null = "null", digits = NA))
}

task_label <- function(step, task) {
  where <- if (!is.null(task$index)) sprintf(", index %s", task$index) else ""
  sprintf("%s[task %s%s]", step, task$id, where)
}

check_artifacts <- function(label, task, values) {
  out <- character()
  for (name in names(values)) {
    got <- task$artifacts[[name]] %||% list(missing = "not read")
    if (!"value" %in% names(got)) {
      out <- c(out, sprintf("%s: artifact '%s' missing (%s), expected %s", label, name,
                            got$missing, show_value(values[[name]])))
    } else if (!values_equal(values[[name]], got$value)) {
      out <- c(out, sprintf("%s: artifact '%s' is %s, expected %s", label, name,
                            show_value(got$value), show_value(values[[name]])))
    }
  }
  out
}

check_absent <- function(label, task, names) {
  out <- character()
  for (name in unlist(names)) {
    got <- task$artifacts[[name]]
    if (!is.null(got) && "value" %in% names(got)) {
      out <- c(out, sprintf("%s: artifact '%s' should be absent, found %s", label, name,
                            show_value(got$value)))
    }
  }
  out
}

check_stdout <- function(label, task, lines) {
  lines <- unlist(lines)
  if (!length(lines)) return(character())
  if (is.null(task$stdout)) {
    return(sprintf("%s: stdout unreadable (%s)", label, task$stdout_error %||% "not read"))
  }
  printed <- sub("\r$", "", strsplit(task$stdout, "\n", fixed = TRUE)[[1]])
  vapply(lines[!lines %in% printed], function(line) {
    sprintf("%s: stdout lacks the line '%s'; stdout was '%s'", label, line, task$stdout)
  }, "")
}

selected <- function(task, entry) {
  if (!is.null(entry$index) && !identical(as.integer(task$index %||% -1L),
                                          as.integer(entry$index))) {
    return(FALSE)
  }
  for (name in names(entry$where)) {
    got <- task$artifacts[[name]]
    if (is.null(got) || !"value" %in% names(got) || !values_equal(entry$where[[name]], got$value)) {
      return(FALSE)
    }
  }
  TRUE
}

check <- function(vector, observation, exit_code) {
  expect <- vector$expect
  problems <- character()
  steps <- observation$steps
  succeeded <- expect$status == "succeeded"
  run_ok <- observation$run$successful
  if (!identical(isTRUE(run_ok), succeeded)) {
    problems <- c(problems, sprintf("run: successful is %s, expected %s (run failure: %s)",
                                    show_value(run_ok), show_value(succeeded),
                                    paste(unlist(observation$run$failure), collapse = "; ")))
  }
  if ((exit_code == 0L) != succeeded) {
    problems <- c(problems, sprintf("CLI: exit code %d, expected %s", exit_code,
                                    if (succeeded) "0" else "non-zero"))
  }
  if (!is.null(expect$error)) {
    texts <- unlist(observation$run$failure)
    for (entry in steps) for (task in entry$tasks) texts <- c(texts, unlist(task$failure))
    if (!any(grepl(expect$error, texts, fixed = TRUE))) {
      problems <- c(problems, sprintf("error: no recorded failure contains '%s'; recorded: %s",
                                      expect$error, show_value(as.list(texts))))
    }
  }
  for (step in names(expect$task_counts)) {
    entry <- steps[[step]] %||% list(tasks = list())
    found <- length(entry$tasks)
    if (found != expect$task_counts[[step]]) {
      why <- if (!is.null(entry$lookup_error)) sprintf(" (lookup: %s)", entry$lookup_error) else ""
      problems <- c(problems, sprintf("%s: %d task(s), expected %d%s", step, found,
                                      as.integer(expect$task_counts[[step]]), why))
    }
  }
  tasks_of <- function(step, section) {
    entry <- steps[[step]] %||% list(tasks = list())
    if (!length(entry$tasks)) {
      why <- if (!is.null(entry$lookup_error)) sprintf(" (lookup: %s)", entry$lookup_error) else ""
      problems <<- c(problems, sprintf("%s: expect.%s needs tasks but the step has none%s",
                                       step, section, why))
    }
    entry$tasks
  }
  for (step in names(expect$artifacts)) {
    for (task in tasks_of(step, "artifacts")) {
      problems <- c(problems, check_artifacts(task_label(step, task), task, expect$artifacts[[step]]))
    }
  }
  for (step in names(expect$absent)) {
    for (task in tasks_of(step, "absent")) {
      problems <- c(problems, check_absent(task_label(step, task), task, expect$absent[[step]]))
    }
  }
  for (step in names(expect$stdout)) {
    for (task in tasks_of(step, "stdout")) {
      problems <- c(problems, check_stdout(task_label(step, task), task, expect$stdout[[step]]))
    }
  }
  for (step in names(expect$tasks)) {
    all_tasks <- tasks_of(step, "tasks")
    for (n in seq_along(expect$tasks[[step]])) {
      entry <- expect$tasks[[step]][[n]]
      chosen <- Filter(function(t) selected(t, entry), all_tasks)
      if (!length(chosen)) {
        problems <- c(problems, sprintf("%s: expect.tasks[%d] selects no task with %s", step,
                                        n - 1L, show_value(entry[intersect(c("index", "where"),
                                                                           names(entry))])))
      }
      for (task in chosen) {
        label <- task_label(step, task)
        problems <- c(problems, check_artifacts(label, task, entry$artifacts),
                      check_absent(label, task, entry$absent),
                      check_stdout(label, task, entry$stdout))
      }
    }
  }
  problems
}

# --------------------------------------------------------------------------------------------
# Running a vector end to end

stop_daemon <- function(root) {
  pid_file <- file.path(root, "daemon.pid")
  if (!file.exists(pid_file)) return(invisible())
  pid <- suppressWarnings(as.integer(readLines(pid_file, warn = FALSE)[1L]))
  if (is.na(pid)) return(invisible())
  cmdline <- tryCatch(readBin(file.path("/proc", pid, "cmdline"), "raw", 4096L),
                      error = function(e) raw(0))
  if (!grepl("polyflow", rawToChar(cmdline[cmdline != as.raw(0)]))) return(invisible())
  tools::pskill(pid, tools::SIGTERM)
  deadline <- Sys.time() + 20
  while (Sys.time() < deadline && file.exists(file.path("/proc", pid))) Sys.sleep(0.05)
  invisible()
}

run_vector <- function(path, project = NULL, observation_file = NULL) {
  vector <- load_vector(path)
  project <- project %||% tempfile(paste0("conformance-", vector$name, "-"))
  dir.create(project, recursive = TRUE, showWarnings = FALSE)
  project <- normalizePath(project)
  root <- file.path(project, ".polyflow")
  old <- Sys.getenv(c("POLYFLOW_ROOT", "POLYFLOW_CORE_ADDRESS", "POLYFLOW_NAMESPACE"),
                    unset = NA)
  Sys.setenv(POLYFLOW_ROOT = root, POLYFLOW_DAEMON_IDLE_TIMEOUT = "120")
  Sys.unsetenv(c("POLYFLOW_CORE_ADDRESS", "POLYFLOW_NAMESPACE"))
  on.exit({
    stop_daemon(root)
    for (name in names(old)) {
      if (is.na(old[[name]])) Sys.unsetenv(name) else do.call(Sys.setenv, as.list(old[name]))
    }
  })
  flow_file <- file.path(project, paste0(vector$name, "_flow.R"))
  writeLines(generate_flow(vector), flow_file, sep = "")
  run_id_file <- file.path(project, "run-id")
  out_file <- file.path(project, "cli.out")
  err_file <- file.path(project, "cli.err")
  owd <- setwd(project)
  exit_code <- system2(file.path(R.home("bin"), "Rscript"),
                       c(shQuote(flow_file), "run", "--run-id-file", shQuote(run_id_file),
                         vapply(unlist(vector$run_args), shQuote, "")),
                       stdout = out_file, stderr = err_file, timeout = 300)
  setwd(owd)
  cli <- sprintf("--- CLI exit code %d\n--- stdout\n%s\n--- stderr\n%s", exit_code,
                 paste(utils::tail(readLines(out_file, warn = FALSE), 40L), collapse = "\n"),
                 paste(utils::tail(readLines(err_file, warn = FALSE), 40L), collapse = "\n"))
  if (!file.exists(run_id_file)) {
    return(list(problems = c(sprintf("%s: the CLI wrote no run id to --run-id-file", vector$name)),
                cli = cli))
  }
  run_id <- readLines(run_id_file, warn = FALSE)[[1L]]
  observation <- tryCatch(observe(vector, run_id), error = function(e) {
    structure(list(error = conditionMessage(e)), class = "observe_failed")
  })
  if (inherits(observation, "observe_failed")) {
    return(list(problems = sprintf("%s: reading run %s through the R client failed: %s",
                                   vector$name, run_id, observation$error), cli = cli))
  }
  # Keep every step, even those without tasks, as a JSON object.
  if (!is.null(observation_file)) {
    write_json_file(c(observation, list(exit_code = exit_code)), observation_file)
  }
  list(problems = check(vector, observation, exit_code), cli = cli, run_id = run_id)
}

report <- function(path, result) {
  name <- sub("\\.json$", "", basename(path))
  if (!length(result$problems)) {
    cat(sprintf("ok    %s (run %s)\n", name, result$run_id %||% "?"))
    return(TRUE)
  }
  cat(sprintf("FAIL  %s: %d mismatch(es)\n", name, length(result$problems)))
  cat(paste0("  - ", result$problems, collapse = "\n"), "\n", sep = "")
  cat(result$cli, "\n", sep = "")
  FALSE
}

main <- function(args) {
  if (!length(args)) {
    cat("usage: Rscript runner_r.R generate|run|observe|check|all ...\n", file = stderr())
    return(2L)
  }
  option <- function(name) {
    at <- match(name, args)
    if (is.na(at) || at == length(args)) NULL else args[[at + 1L]]
  }
  command <- args[[1L]]
  if (command == "generate") {
    source <- generate_flow(load_vector(args[[2L]]))
    out <- option("-o")
    if (is.null(out)) cat(source) else writeLines(source, out, sep = "")
    return(0L)
  }
  if (command == "observe") {
    write_json_file(observe(load_vector(args[[2L]]), args[[3L]]), option("--out"))
    return(0L)
  }
  if (command == "check") {
    observation <- jsonlite::read_json(args[[3L]], simplifyVector = FALSE)
    problems <- check(load_vector(args[[2L]]), observation, as.integer(args[[4L]]))
    cat(paste0(problems, "\n"), sep = "")
    return(if (length(problems)) 1L else 0L)
  }
  if (command == "run") {
    result <- run_vector(args[[2L]], option("--project"), option("--observation"))
    return(if (report(args[[2L]], result)) 0L else 1L)
  }
  if (command == "all") {
    paths <- args[-1L]
    if (!length(paths)) {
      paths <- sort(list.files(file.path(runner_dir(), "vectors"), "\\.json$", full.names = TRUE))
    }
    ok <- vapply(paths, function(p) report(p, run_vector(p)), TRUE)
    cat(sprintf("%d of %d vectors conformant\n", sum(ok), length(ok)))
    return(if (all(ok)) 0L else 1L)
  }
  cat("unknown command ", command, "\n", sep = "", file = stderr())
  2L
}

if (sys.nframe() == 0L) {
  quit(save = "no", status = main(commandArgs(trailingOnly = TRUE)))
}
