# Finding the core, and starting a local daemon when none answers: the same
# rules as the Python SDK (python-sdk/polyflow/_daemon.py).
#
# 1. POLYFLOW_CORE_ADDRESS: a core somewhere else (or the daemon that launched
#    this task worker). Nothing is started.
# 2. The root: POLYFLOW_ROOT, else the nearest .polyflow folder at or above the
#    working directory, else a new ./.polyflow (mode 0700). Its daemon listens
#    on <root>/daemon.sock, or on /tmp/polyflow-<uid>/<16 hex>.sock when that
#    path is over 100 bytes. When nothing answers, the daemon is started with
#    the Python that has polyflow_core: POLYFLOW_PYTHON, else the interpreter
#    of the `polyflow-core` script on PATH, else python3.

pf_env_address <- "POLYFLOW_CORE_ADDRESS"
pf_env_root <- "POLYFLOW_ROOT"
pf_max_socket_bytes <- 100L

pf_find_root <- function(start = getwd()) {
  here <- normalizePath(start, mustWork = FALSE)
  if (basename(here) == ".polyflow" && dir.exists(here)) {
    return(here)
  }
  repeat {
    candidate <- file.path(here, ".polyflow")
    if (dir.exists(candidate)) {
      return(normalizePath(candidate))
    }
    parent <- dirname(here)
    if (identical(parent, here)) {
      return(NULL)
    }
    here <- parent
  }
}

pf_resolve_root <- function(create = TRUE) {
  from_env <- Sys.getenv(pf_env_root)
  if (nzchar(from_env)) {
    root <- path.expand(from_env)
    if (create && !dir.exists(root)) {
      dir.create(root, recursive = TRUE, mode = "0700")
    }
    return(if (dir.exists(root)) normalizePath(root) else if (create) root else NULL)
  }
  found <- pf_find_root()
  if (!is.null(found) || !create) {
    return(found)
  }
  root <- file.path(getwd(), ".polyflow")
  dir.create(root, mode = "0700", showWarnings = FALSE)
  normalizePath(root)
}

pf_current_uid <- function() {
  info <- file.info(tempdir(), extra_cols = TRUE)
  as.integer(info$uid)
}

pf_socket_path <- function(root) {
  in_root <- file.path(root, "daemon.sock")
  if (nchar(enc2native(in_root), type = "bytes") <= pf_max_socket_bytes) {
    return(in_root)
  }
  hex <- digest::digest(enc2utf8(root), algo = "sha256", serialize = FALSE)
  file.path("/tmp", paste0("polyflow-", pf_current_uid()), paste0(substr(hex, 1L, 16L), ".sock"))
}

pf_resolve_endpoint <- function(create_root = TRUE) {
  address <- Sys.getenv(pf_env_address)
  if (nzchar(address)) {
    return(list(address = address, root = NULL))
  }
  root <- pf_resolve_root(create = create_root)
  if (is.null(root)) {
    return(NULL)
  }
  list(address = paste0("unix:", pf_socket_path(root)), root = root)
}

# The Python interpreter that runs polyflow_core.
pf_core_python <- function() {
  explicit <- Sys.getenv("POLYFLOW_PYTHON")
  if (nzchar(explicit)) {
    return(explicit)
  }
  script <- Sys.which("polyflow-core")
  if (nzchar(script)) {
    first <- tryCatch(readLines(script, n = 1L, warn = FALSE), error = function(e) "")
    if (length(first) == 1L && startsWith(first, "#!")) {
      python <- trimws(sub("^#!", "", first))
      if (file.exists(python)) {
        return(python)
      }
    }
  }
  python <- Sys.which("python3")
  if (nzchar(python)) python else "python3"
}

# The launcher forks the daemon into its own session and exits at once, as the
# Python SDK does, so the daemon is not this R process's child.
pf_launcher <- paste(
  "import os, sys",
  "if os.fork() == 0:",
  "    os.setsid()",
  "    argv = [sys.executable, '-m', 'polyflow_core', 'serve', '--root', sys.argv[1]]",
  "    os.execv(sys.executable, argv)",
  "os._exit(0)",
  sep = "\n"
)

pf_probe <- function(address, timeout = 2) {
  conn <- pf_parse_address(address)
  conn$token <- Sys.getenv("POLYFLOW_CORE_TOKEN")
  tryCatch(
    pf_grpc_unary(conn, "runtime.RuntimeService/GetServerInfo",
                  pf_msg("runtime.GetServerInfoRequest"),
                  "runtime.GetServerInfoResponse", timeout = timeout),
    polyflow_error_unavailable = function(e) NULL,
    polyflow_error_deadline_exceeded = function(e) NULL
  )
}

pf_log_tail <- function(path, n = 20L) {
  if (!file.exists(path)) {
    return("")
  }
  lines <- tryCatch(readLines(path, warn = FALSE), error = function(e) character())
  paste(utils::tail(lines, n), collapse = "\n")
}

# Make sure the root's daemon answers, starting it when needed; returns its
# GetServerInfoResponse.
pf_ensure_daemon <- function(root, timeout = 20) {
  socket <- pf_socket_path(root)
  address <- paste0("unix:", socket)
  if (file.exists(socket)) {
    info <- pf_probe(address)
    if (!is.null(info)) {
      return(info)
    }
  }
  log_path <- file.path(root, "daemon.log")
  python <- pf_core_python()
  command <- paste(shQuote(python), "-c", shQuote(pf_launcher), shQuote(root),
                   ">>", shQuote(log_path), "2>&1 </dev/null")
  status <- tryCatch(system(command, wait = TRUE), error = function(e) -1L)
  deadline <- Sys.time() + timeout
  while (Sys.time() < deadline) {
    if (file.exists(socket)) {
      info <- pf_probe(address, timeout = 1)
      if (!is.null(info)) {
        return(info)
      }
    }
    Sys.sleep(0.05)
  }
  tail <- pf_log_tail(log_path)
  message <- sprintf(
    "the polyflow daemon for %s did not answer on %s within %g s (started with %s%s)",
    root, address, timeout, python, if (!identical(as.integer(status), 0L)) ", which failed" else ""
  )
  message <- if (nzchar(tail)) paste0(message, "; the end of ", log_path, ":\n", tail) else
    paste0(message, " (nothing in ", log_path, ")")
  pf_throw("daemon", message, address = address)
}
