# How the flow command line prints: the Python CLI's timestamped lines
# (python-sdk/polyflow/_cli/_output.py). Framework messages and task stderr go
# to standard error, task stdout to standard output; --quiet keeps only task
# output, errors and the final failure.

pf_timestamp <- function(when = NULL) {
  when <- when %||% Sys.time()
  format(as.POSIXct(when), "%Y-%m-%d %H:%M:%OS3", tz = "")
}

pf_console <- function(quiet = FALSE) {
  out <- function(text, stderr = TRUE) {
    con <- if (stderr) base::stderr() else base::stdout()
    cat(text, "\n", sep = "", file = con)
    flush(con)
  }
  list(
    quiet = quiet,
    info = function(text) if (!quiet) out(text),
    event = function(text, when = NULL) if (!quiet) out(paste(pf_timestamp(when), text)),
    task = function(pathspec, text, when = NULL) {
      if (!quiet) out(sprintf("%s [%s] %s", pf_timestamp(when), pathspec, text))
    },
    task_failure = function(pathspec, lines, when = NULL) {
      stamp <- pf_timestamp(when)
      for (line in lines) out(sprintf("%s [%s] %s", stamp, pathspec, line))
    },
    log = function(pathspec, text, stderr, when = NULL) {
      out(sprintf("%s [%s] %s", pf_timestamp(when), pathspec, text), stderr = stderr)
    },
    error = function(text) out(text),
    print = function(text) out(text, stderr = FALSE)
  )
}
