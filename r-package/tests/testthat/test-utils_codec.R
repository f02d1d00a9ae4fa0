test_that("simple values are written as JSON that reads back exactly", {
  values <- list(NULL, TRUE, 3L, 2.5, 5, "h\u00e9 \"q\"\n", list(1L, "a", NULL),
                 list(a = 1L, b = list(c = FALSE)), list(), setNames(list(), character(0)))
  for (value in values) {
    encoded <- pf_encode(value)
    expect_equal(encoded$encoding, "json", info = deparse(value))
    expect_identical(pf_decode(encoded$bytes, "json"), value, info = deparse(value))
  }
})

test_that("doubles keep a fraction so that they read back as doubles", {
  expect_equal(rawToChar(pf_encode(5)$bytes), "5.0")
  expect_equal(rawToChar(pf_encode(0.1)$bytes), "0.1")
  expect_equal(rawToChar(pf_encode(1e300)$bytes), "1e+300")
  expect_equal(rawToChar(pf_encode(-2.5)$bytes), "-2.5")
  expect_equal(rawToChar(pf_encode(1/3)$bytes), "0.3333333333333333")
  expect_identical(pf_decode(pf_encode(1/3)$bytes, "json"), 1/3)
})

test_that("other values are R serialization", {
  values <- list(c(1, 2), c(a = 1), NA, NaN, Inf, factor("a"), data.frame(x = 1:2),
                 matrix(1:4, 2), list(a = 1, a = 2), list(1, b = 2), sum)
  for (value in values) {
    encoded <- pf_encode(value)
    expect_equal(encoded$encoding, "rds", info = deparse(value)[[1L]])
    expect_identical(pf_decode(encoded$bytes, "rds"), value)
  }
})

test_that("an encoding carries the type name, size and digest of its bytes", {
  encoded <- pf_encode(data.frame(x = 1))
  expect_equal(encoded$type_name, "data.frame")
  expect_equal(encoded$size, length(encoded$bytes))
  expect_match(encoded$digest, "^sha256:[0-9a-f]{64}$")
  expect_equal(polyflow:::pf_sha256(charToRaw("abc")),
               "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  expect_identical(pf_encode(list(1, 2))$digest, pf_encode(list(1, 2))$digest)
})

test_that("JSON over 1 MiB is serialized instead", {
  expect_equal(pf_encode(strrep("x", 1100000))$encoding, "rds")
})

test_that("encodings R cannot decode are refused", {
  expect_error(pf_decode(raw(4), "pickle-v5"), class = "polyflow_error_conversion")
})
