test_that("the root is POLYFLOW_ROOT, else the nearest .polyflow, else a new one", {
  dir <- withr::local_tempdir()
  withr::local_envvar(POLYFLOW_ROOT = NA)
  nested <- file.path(dir, "a", "b")
  dir.create(nested, recursive = TRUE)
  dir.create(file.path(dir, ".polyflow"))
  withr::local_dir(nested)
  expect_equal(polyflow:::pf_resolve_root(), normalizePath(file.path(dir, ".polyflow")))
  withr::local_envvar(POLYFLOW_ROOT = file.path(dir, "custom"))
  expect_null(polyflow:::pf_resolve_root(create = FALSE))
  expect_equal(polyflow:::pf_resolve_root(), normalizePath(file.path(dir, "custom")))
})

test_that("a deep root's socket falls back to a short path", {
  expect_equal(polyflow:::pf_socket_path("/tmp/p/.polyflow"), "/tmp/p/.polyflow/daemon.sock")
  deep <- paste0("/tmp/", strrep("d", 120), "/.polyflow")
  path <- polyflow:::pf_socket_path(deep)
  hex <- substr(digest::digest(deep, algo = "sha256", serialize = FALSE), 1, 16)
  expect_equal(basename(path), paste0(hex, ".sock"))
  expect_match(dirname(path), "^/tmp/polyflow-[0-9]+$")
})

test_that("POLYFLOW_CORE_ADDRESS names a core to use as it is", {
  withr::local_envvar(POLYFLOW_CORE_ADDRESS = "127.0.0.1:1")
  expect_equal(polyflow:::pf_resolve_endpoint(), list(address = "127.0.0.1:1", root = NULL))
})

test_that("the daemon's Python is POLYFLOW_PYTHON when set", {
  withr::local_envvar(POLYFLOW_PYTHON = "/opt/py/bin/python")
  expect_equal(polyflow:::pf_core_python(), "/opt/py/bin/python")
})

test_that("a daemon that cannot start is reported with its log", {
  dir <- withr::local_tempdir()
  withr::local_envvar(POLYFLOW_PYTHON = "/bin/false")
  expect_error(polyflow:::pf_ensure_daemon(dir, timeout = 0.5), class = "polyflow_error_daemon")
})
