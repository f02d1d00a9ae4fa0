test_that("blobs are written with the PFB1 header at their digest's path", {
  store <- local_store()
  bytes <- charToRaw("hello")
  digest <- polyflow:::pf_store_put(store, bytes)
  expect_equal(digest, polyflow:::pf_sha256(bytes))
  path <- polyflow:::pf_blob_path(store$root, digest)
  expect_true(file.exists(path))
  content <- readBin(path, "raw", 100)
  expect_equal(content[1:5], c(charToRaw("PFB1"), as.raw(0)))
  expect_equal(polyflow:::pf_store_get(store, digest), bytes)
  expect_equal(polyflow:::pf_store_put(store, bytes), digest)
  expect_length(list.files(file.path(store$root, "tmp")), 0L)
})

test_that("empty blobs round-trip", {
  store <- local_store()
  digest <- polyflow:::pf_store_put(store, raw(0))
  expect_equal(polyflow:::pf_store_get(store, digest), raw(0))
})

test_that("a corrupted blob is data loss", {
  store <- local_store()
  digest <- polyflow:::pf_store_put(store, charToRaw("abc"))
  path <- polyflow:::pf_blob_path(store$root, digest)
  writeBin(c(charToRaw("PFB1"), as.raw(0), charToRaw("abd")), path)
  expect_error(polyflow:::pf_store_get(store, digest), class = "polyflow_error_data_loss")
})

test_that("a blob found corrupt is quarantined and restored by the next writer", {
  store <- local_store()
  bytes <- charToRaw("abc")
  digest <- polyflow:::pf_store_put(store, bytes)
  path <- polyflow:::pf_blob_path(store$root, digest)
  writeBin(c(charToRaw("PFB1"), as.raw(0), charToRaw("abd")), path)
  expect_error(polyflow:::pf_store_get(store, digest), class = "polyflow_error_data_loss")
  expect_false(file.exists(path))
  expect_true(file.exists(file.path(store$root, "quarantine", basename(path))))
  expect_equal(polyflow:::pf_store_put(store, bytes), digest)
  expect_equal(polyflow:::pf_store_get(store, digest), bytes)
})

test_that("a writer replaces a stored file whose header or size is wrong", {
  store <- local_store()
  bytes <- charToRaw("abcdef")
  digest <- polyflow:::pf_store_put(store, bytes)
  path <- polyflow:::pf_blob_path(store$root, digest)
  for (damaged in list(c(charToRaw("PFB1"), as.raw(0), charToRaw("abc")),
                       charToRaw("XXXX"), raw(0))) {
    writeBin(damaged, path)
    expect_equal(polyflow:::pf_store_put(store, bytes), digest)
    expect_equal(polyflow:::pf_store_get(store, digest), bytes)
  }
})

test_that("malformed digests are refused", {
  expect_error(polyflow:::pf_blob_path("/x", "sha256:zz"), class = "polyflow_error_invalid_argument")
})

test_that("values are stored and loaded through refs", {
  store <- local_store()
  ref <- polyflow:::pf_store_value(store, "df", data.frame(a = 1:3))
  expect_equal(ref$encoding, "rds")
  expect_equal(ref$type_name, "data.frame")
  expect_equal(polyflow:::pf_load_ref(store, ref), data.frame(a = 1:3))
  ref <- polyflow:::pf_store_value(store, "x", list(1L, "b"))
  expect_equal(ref$encoding, "json")
  expect_equal(polyflow:::pf_load_ref(store, ref), list(1L, "b"))
  proto <- polyflow:::pf_ref_to_proto(ref)
  expect_equal(polyflow:::pf_ref_from_proto(proto), ref)
})
