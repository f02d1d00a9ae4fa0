test_that("a core connection describes its address", {
  core <- polyflow:::pf_new_core("unix:/tmp/x.sock", root = "/tmp")
  expect_s3_class(core, "polyflow_core")
  expect_output(print(core), "<polyflow core at unix:/tmp/x.sock>")
})

test_that("RPCs reach a real daemon and its store", {
  skip_if_no_polyflow_python()
  local_project()
  info <- polyflow:::pf_rpc_server_info()
  expect_equal(info$store$kind, "local")
  store <- polyflow:::pf_client_store()
  expect_true(store$local)
  digest <- polyflow:::pf_rpc_upload_blob(charToRaw("through the core"))
  expect_equal(polyflow:::pf_rpc_read_blob(digest), charToRaw("through the core"))
  expect_error(polyflow:::pf_rpc_get_run("flows/Nope/runs/1"), class = "polyflow_error_not_found")
})
