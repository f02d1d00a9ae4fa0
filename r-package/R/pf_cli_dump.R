# `dump RUN_ID/STEP[/TASK_ID]`: print the artifacts of a task, or of every task
# of a step, as the Python CLI does (python-sdk/polyflow/_cli/_dump.py).
#
# Each artifact prints as one line on standard output:
#
#     name [size: 10 type: character] = "hi there"
#
# `size` is the stored (encoded) size in bytes. A value is shown only when its
# stored size is at most `--max-value-size` bytes (so a huge artifact is never
# loaded just to be cut), as a one-line deparse cut to that many characters,
# with a visible marker either way. Values written by Python are converted by
# the core (pf_load_ref()); one that cannot be shows a `<cannot load: ...>`
# marker. `--file` writes every value, uncut, to an .rds file instead: a named
# list `list("run_id/step/task_id" = list(name = value, ...))`. A run id is read
# whatever namespace it is in, as in Python (and Metaflow).

pf_dump_default_max_value_size <- 1000L

pf_task_path_form <- "run_id/step_name or run_id/step_name/task_id (e.g. 12/start or 12/start/3)"

pf_dump_usage <- function(flow) {
  paste0(paste(c(
    sprintf("Usage: Rscript %s dump [OPTIONS] PATHSPEC", pf_cli_prog(flow)), "",
    "  Show the artifacts of a task, or of every task of a step. PATHSPEC is",
    "  run_id/step_name or run_id/step_name/task_id.", "",
    "Options:",
    "  --private / --no-private        Show also artifacts whose names start with",
    "                                  '_'.  [default: no-private]",
    "  --max-value-size INTEGER RANGE  Show values stored in at most this many",
    "                                  bytes, their deparse cut to as many",
    "                                  characters; 0 shows names only.",
    "                                  [default: 1000; x>=0]",
    "  --include NAMES                 Show only these artifacts (comma-separated",
    "                                  names).",
    "  --file FILE                     Write every value, uncut, to this file as an",
    "                                  .rds of list(\"run_id/step/task_id\" =",
    "                                  list(name = value)) instead of printing.",
    "  -h, --help                      Show this message and exit."
  ), collapse = "\n"), "\n")
}

# Read a command line pathspec of the flow: list(flow, run, step, task (NULL:
# every task of the step)). A leading flow name is accepted.
pf_parse_task_path <- function(flow, text, param = "PATHSPEC") {
  parts <- strsplit(gsub("^/+|/+$", "", trimws(text)), "/", fixed = TRUE)[[1]]
  if (length(parts) %in% c(3L, 4L) && identical(parts[[1L]], flow)) {
    parts <- parts[-1L]
  }
  if (!length(parts) %in% c(2L, 3L) || !all(nzchar(parts))) {
    pf_throw("usage", sprintf("Invalid value for %s: %s is not %s", param, pf_py_quote(text),
                              pf_task_path_form))
  }
  list(flow = flow, run = parts[[1L]], step = parts[[2L]],
       task = if (length(parts) == 3L) parts[[3L]] else NULL)
}

pf_task_path_pathspec <- function(path) {
  paste(c(path$flow, path$run, path$step, path$task), collapse = "/")
}

# The names to dump, sorted (by code point, as Python does), and the `include`
# names that are missing.
pf_dump_select <- function(names, include = character(), private = FALSE) {
  names <- as.character(names)
  keep <- (private | !startsWith(names, "_")) & (!length(include) | names %in% include)
  list(names = pf_py_sorted(names[keep]),
       missing = if (length(include)) pf_py_sorted(setdiff(include, names)) else character())
}

# "a, b , c" -> c("a", "b", "c").
pf_dump_split_names <- function(text) {
  names <- trimws(strsplit(text %||% "", ",", fixed = TRUE)[[1]])
  names[nzchar(names)]
}

# A value on one line: its deparse, the lines joined.
pf_dump_deparse <- function(value) {
  paste(trimws(deparse(value, width.cutoff = 500L)), collapse = " ")
}

# The one-line text of a value, cut to `max_size` characters with a marker saying so.
pf_dump_format_value <- function(value, max_size) {
  text <- pf_dump_deparse(value)
  if (nchar(text) <= max_size) {
    return(text)
  }
  sprintf("%s... [truncated: the deparse has %d characters]", substr(text, 1L, max_size),
          nchar(text))
}

pf_dump_bytes <- function(size) format(size, scientific = FALSE, trim = TRUE)

# What `dump` shows for an artifact's value: the value, or a marker saying why not.
pf_dump_value_text <- function(artifact, max_size, load = pf_artifact_value) {
  if (max_size == 0) {
    return("<not loaded: --max-value-size is 0>")
  }
  if (artifact$size > max_size) {
    return(sprintf("<not loaded: %s bytes stored, over --max-value-size %d>",
                   pf_dump_bytes(artifact$size), as.integer(max_size)))
  }
  tryCatch(
    pf_dump_format_value(load(artifact), max_size),
    error = function(e) {
      kind <- e$type %||% class(e)[[1L]]
      sprintf("<cannot load: %s: %s>", kind, conditionMessage(e))
    }
  )
}

pf_dump_line <- function(name, artifact, text) {
  sprintf("%s [size: %s type: %s] = %s", name, pf_dump_bytes(artifact$size),
          artifact$type_name, text)
}

# The task named, or every task of the step (by task id), read in any namespace
# (the namespace in effect is restored on return).
pf_dump_find_tasks <- function(path) {
  old <- pf_state$namespace
  on.exit(pf_state$namespace <- old, add = TRUE)
  pf_namespace(NULL)
  run <- pf_get_run(paste(path$flow, path$run, sep = "/"))
  if (!is.null(path$task)) {
    return(list(pf_get_task(paste(run$pathspec, path$step, path$task, sep = "/"))))
  }
  pf_list_tasks(pf_get_step(run, path$step))
}

# The value of an artifact for `--file`, which writes every value or none: one
# that R cannot have fails the dump, the message saying how to leave it out.
pf_dump_load_for_file <- function(artifact, task) {
  tryCatch(pf_artifact_value(artifact), polyflow_error_conversion = function(e) {
    e$message <- sprintf("%s (task %s; leave it out with --include)", conditionMessage(e),
                         task$pathspec)
    stop(e)
  })
}

# Print (or write to an .rds file) the artifacts of the tasks `path` names;
# returns the exit status.
pf_dump_tasks <- function(path, private = FALSE, max_value_size = pf_dump_default_max_value_size,
                          include = character(), file = NULL, console = pf_console()) {
  tasks <- pf_dump_find_tasks(path)
  if (!length(tasks)) {
    pf_throw_not_found(sprintf("step %s has no task", pf_task_path_pathspec(path)))
  }
  collected <- list()
  for (task in tasks) {
    artifacts <- pf_list_artifacts(task, include_private = private)
    chosen <- pf_dump_select(names(artifacts), include, private)
    console$info(sprintf("Artifacts of task %s:", task$pathspec))
    for (name in chosen$missing) {
      console$error(sprintf("    (no artifact named %s in %s)", pf_py_quote(name), task$pathspec))
    }
    if (!is.null(file)) {
      key <- paste(path$run, path$step, task$id, sep = "/")  # Metaflow's key: run_id/step/task_id
      values <- lapply(artifacts[chosen$names], pf_dump_load_for_file, task = task)
      collected[[key]] <- stats::setNames(values, chosen$names)
      next
    }
    for (name in chosen$names) {
      artifact <- artifacts[[name]]
      console$print(pf_dump_line(name, artifact, pf_dump_value_text(artifact, max_value_size)))
    }
  }
  if (!is.null(file)) {
    failed <- tryCatch({
      saveRDS(collected, file)
      NULL
    }, warning = identity, error = identity)
    if (!is.null(failed)) {
      pf_throw_invalid_argument(sprintf("cannot write %s: %s", file, conditionMessage(failed)))
    }
    console$info(sprintf("Artifacts written to %s", file))
  }
  0L
}

# The options of `dump`, checked (usage errors).
pf_dump_options <- function(rest) {
  parsed <- pf_cli_parse(rest, options = c("max-value-size", "include", "file"),
                         flags = c("private", "no-private"))
  opts <- parsed$options
  if (!is.null(opts[["help"]])) {
    return(list(help = TRUE))
  }
  if (!length(parsed$positional)) {
    pf_throw("usage", "Missing argument 'PATHSPEC'.")
  }
  if (length(parsed$positional) > 1L) {
    pf_throw("usage", sprintf("Got unexpected extra argument (%s)", parsed$positional[[2L]]))
  }
  max_size <- pf_dump_default_max_value_size
  if (!is.null(opts[["max-value-size"]])) {
    text <- opts[["max-value-size"]]
    max_size <- suppressWarnings(as.numeric(text))
    if (is.na(max_size) || max_size < 0 || max_size != round(max_size) ||
        max_size > .Machine$integer.max) {
      pf_throw("usage", sprintf(
        "Invalid value for '--max-value-size': '%s' is not a whole number >= 0", text
      ))
    }
  }
  file <- opts[["file"]]
  if (!is.null(file) && !nzchar(file)) {
    pf_throw("usage", "Invalid value for '--file': the file name is empty.")
  }
  if (!is.null(file) && dir.exists(file)) {
    pf_throw("usage", sprintf("Invalid value for '--file': File %s is a directory.",
                              pf_py_quote(file)))
  }
  # --private and --no-private: the last one given wins, as in click.
  private_flags <- intersect(rev(names(opts)), c("private", "no-private"))
  list(help = FALSE, pathspec = parsed$positional[[1L]],
       private = length(private_flags) > 0L && private_flags[[1L]] == "private",
       max_value_size = as.integer(max_size), include = pf_dump_split_names(opts[["include"]]),
       file = file)
}

# `dump PATHSPEC [--private] [--max-value-size N] [--include NAMES] [--file FILE]`.
pf_cli_dump <- function(flow, rest, console = pf_console()) {
  options <- pf_dump_options(rest)
  if (options$help) {
    cat(pf_dump_usage(flow))
    return(0L)
  }
  path <- pf_parse_task_path(flow$name, options$pathspec)
  pf_dump_tasks(path, private = options$private, max_value_size = options$max_value_size,
                include = options$include, file = options$file, console = console)
}
