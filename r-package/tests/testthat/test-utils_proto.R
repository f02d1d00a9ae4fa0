test_that("the shipped .proto files are identical to the repository's contract", {
  shipped <- system.file("proto", package = "polyflow")
  # From the source tree (tests/testthat), the contract is ../../../proto.
  candidates <- c(Sys.getenv("POLYFLOW_PROTO_DIR"), file.path(testthat::test_path(), "..", "..", "..", "proto"))
  repo <- Filter(function(d) nzchar(d) && dir.exists(d), candidates)
  skip_if(!length(repo), "the repository's proto/ folder is not reachable (installed package)")
  repo <- normalizePath(repo[[1L]])
  files <- sort(list.files(repo, pattern = "\\.proto$", recursive = TRUE))
  expect_equal(sort(list.files(shipped, pattern = "\\.proto$", recursive = TRUE)), files)
  for (file in files) {
    expect_identical(readLines(file.path(shipped, file)), readLines(file.path(repo, file)),
                     info = paste(file, "differs: run r-package/tools/sync-proto.sh"))
  }
})

test_that("messages are made, serialized and parsed from the shipped contract", {
  request <- polyflow:::pf_msg("metadata.GetTaskRequest", name = "flows/F/runs/1/steps/s/tasks/2")
  expect_false(polyflow:::pf_has(request, "attempt"))
  request$attempt <- 0L
  expect_true(polyflow:::pf_has(request, "attempt"))
  again <- polyflow:::pf_parse("metadata.GetTaskRequest", polyflow:::pf_bytes(request))
  expect_equal(again$name, "flows/F/runs/1/steps/s/tasks/2")
  expect_equal(again$attempt, 0L)
})

test_that("short type names expand to the contract's packages", {
  expect_equal(polyflow:::pf_full_type("runtime.TaskSpec"), "polyflow.api.runtime.v1.TaskSpec")
  expect_equal(polyflow:::pf_full_type("common.Transition.SwitchCasesEntry"),
               "polyflow.api.common.v1.Transition.SwitchCasesEntry")
  expect_equal(polyflow:::pf_full_type("rpc.Status"), "google.rpc.Status")
  expect_equal(polyflow:::pf_full_type("x.y.Z"), "x.y.Z")
})

test_that("timestamps and enums read as R values", {
  run <- polyflow:::pf_msg("metadata.Run", name = "flows/F/runs/1", state = 3L)
  expect_null(polyflow:::pf_time(run, "create_time"))
  run$create_time$seconds <- 86400
  expect_equal(as.numeric(polyflow:::pf_time(run, "create_time")), 86400)
  expect_equal(polyflow:::pf_enum_name("run_state", 3L), "succeeded")
  expect_equal(polyflow:::pf_enum_name("run_state", 99L), "unspecified")
})
