test_that("messages are framed with a flag byte and a big-endian length", {
  frame <- polyflow:::pf_frame(as.raw(1:3))
  expect_equal(frame, as.raw(c(0, 0, 0, 0, 3, 1, 2, 3)))
  big <- polyflow:::pf_frame(raw(70000))
  expect_equal(big[1:5], as.raw(c(0, 0, 1, 0x11, 0x70)))
})

test_that("a body splits into complete frames and a rest", {
  body <- c(polyflow:::pf_frame(as.raw(1:2)), polyflow:::pf_frame(raw(0)),
            polyflow:::pf_frame(as.raw(9)))
  parsed <- polyflow:::pf_unframe(body[-length(body)])
  expect_equal(parsed$messages, list(as.raw(1:2), raw(0)))
  expect_equal(length(parsed$rest), 5L)
  parsed <- polyflow:::pf_unframe(body)
  expect_equal(length(parsed$messages), 3L)
  expect_equal(parsed$rest, raw(0))
  expect_error(polyflow:::pf_unframe(as.raw(c(1, 0, 0, 0, 0))), "compressed")
})

test_that("addresses parse into curl settings", {
  unix <- polyflow:::pf_parse_address("unix:/tmp/x/daemon.sock")
  expect_equal(unix$socket, "/tmp/x/daemon.sock")
  expect_equal(unix$base, "http://localhost")
  expect_equal(polyflow:::pf_parse_address("unix:///tmp/d.sock")$socket, "/tmp/d.sock")
  tcp <- polyflow:::pf_parse_address("127.0.0.1:50051")
  expect_null(tcp$socket)
  expect_equal(tcp$base, "http://127.0.0.1:50051")
  tls <- polyflow:::pf_parse_address("https://core.example:443/")
  expect_true(tls$tls)
  expect_equal(tls$base, "https://core.example:443")
})

test_that("method paths use the full service names", {
  expect_equal(polyflow:::pf_method_path("runtime.RuntimeService/StartRun"),
               "polyflow.api.runtime.v1.RuntimeService/StartRun")
})

test_that("trailers become classed errors with the ErrorInfo reason", {
  info <- polyflow:::pf_msg("rpc.ErrorInfo", reason = "NOT_FOUND", domain = "polyflow.dev")
  info$metadata <- list(polyflow:::pf_msg("rpc.ErrorInfo.MetadataEntry", key = "name",
                                          value = "flows/X"))
  # Well-known types cannot be assigned as fields (an RProtoBuf limit): go through text.
  escaped <- paste0("\\", sprintf("%03o", as.integer(polyflow:::pf_bytes(info))), collapse = "")
  text <- sprintf(paste0('code: 5 message: "gone" details { type_url: ',
                         '"type.googleapis.com/google.rpc.ErrorInfo" value: "%s" }'), escaped)
  status <- RProtoBuf::readASCII(polyflow:::pf_type("rpc.Status"), text)
  encoded <- gsub("=+$", "", jsonlite::base64_enc(polyflow:::pf_bytes(status)))
  headers <- c("grpc-status" = "5", "grpc-message" = "flows%2FX not found",
               "grpc-status-details-bin" = encoded)
  err <- tryCatch(polyflow:::pf_check_status(headers, "m", 200L), error = function(e) e)
  expect_s3_class(err, "polyflow_error_not_found")
  expect_equal(conditionMessage(err), "flows/X not found")
  expect_equal(err$reason, "NOT_FOUND")
  expect_equal(err$metadata$name, "flows/X")
  expect_true(polyflow:::pf_check_status(c("grpc-status" = "0"), "m", 200L))
  expect_error(polyflow:::pf_check_status(c(a = "b"), "m", 503L),
               class = "polyflow_error_unavailable")
  expect_equal(polyflow:::pf_grpc_kind(14L), "unavailable")
  expect_equal(polyflow:::pf_grpc_kind(2L), "rpc")
})

test_that("a core that does not listen is unavailable", {
  conn <- polyflow:::pf_new_core(paste0("unix:", tempfile(fileext = ".sock")))
  expect_error(
    polyflow:::pf_grpc_unary(conn, "runtime.RuntimeService/GetServerInfo",
                             polyflow:::pf_msg("runtime.GetServerInfoRequest"),
                             "runtime.GetServerInfoResponse", timeout = 2),
    class = "polyflow_error_unavailable"
  )
})
