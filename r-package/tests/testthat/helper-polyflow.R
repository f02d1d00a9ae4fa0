# Helpers shared by the tests.

# The Python that runs the Polyflow core, or "" when there is none.
polyflow_python <- function() {
  python <- Sys.getenv("POLYFLOW_PYTHON")
  if (!nzchar(python)) {
    python <- polyflow:::pf_core_python()
  }
  ok <- tryCatch(
    suppressWarnings(system2(python, c("-c", shQuote("import polyflow_core, polyflow")),
                             stdout = FALSE, stderr = FALSE)) == 0L,
    error = function(e) FALSE
  )
  if (isTRUE(ok)) python else ""
}

# Skip a test that needs a real core (a Python with polyflow installed).
skip_if_no_polyflow_python <- function() {
  testthat::skip_on_cran()
  if (!nzchar(polyflow_python())) {
    testthat::skip("no Python with polyflow_core (set POLYFLOW_PYTHON)")
  }
}

# A temporary project with its own root; the daemon it starts is stopped at the end.
local_project <- function(env = parent.frame()) {
  dir <- normalizePath(withr::local_tempdir("pf-project-", .local_envir = env))
  root <- file.path(dir, ".polyflow")
  withr::local_envvar(
    POLYFLOW_ROOT = root, POLYFLOW_PYTHON = polyflow_python(),
    R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep),
    POLYFLOW_DAEMON_IDLE_TIMEOUT = "60", POLYFLOW_USER = "tester",
    POLYFLOW_CORE_ADDRESS = NA, POLYFLOW_NAMESPACE = NA, .local_envir = env
  )
  polyflow:::pf_reset_core()
  withr::local_dir(dir, .local_envir = env)
  withr::defer({
    stop_test_daemon(root)
    polyflow:::pf_reset_core()
  }, envir = env)
  dir
}

stop_test_daemon <- function(root) {
  pid_file <- file.path(root, "daemon.pid")
  if (!file.exists(pid_file)) return(invisible())
  pid <- suppressWarnings(as.integer(readLines(pid_file, warn = FALSE)[1L]))
  if (is.na(pid) || !file.exists(file.path("/proc", pid))) return(invisible())
  tools::pskill(pid, tools::SIGTERM)
  deadline <- Sys.time() + 15
  while (Sys.time() < deadline && file.exists(file.path("/proc", pid))) Sys.sleep(0.05)
  invisible()
}

# Run `Rscript <file> <args>` and capture its exit status and output.
run_rscript <- function(file, args = character()) {
  out <- tempfile()
  err <- tempfile()
  status <- system2(file.path(R.home("bin"), "Rscript"), c(shQuote(file), args),
                    stdout = out, stderr = err)
  list(status = status, stdout = paste(readLines(out, warn = FALSE), collapse = "\n"),
       stderr = paste(readLines(err, warn = FALSE), collapse = "\n"))
}

# A blob store in a temporary folder.
local_store <- function(env = parent.frame()) {
  root <- withr::local_tempdir("pf-store-", .local_envir = env)
  polyflow:::pf_store("local", root)
}
