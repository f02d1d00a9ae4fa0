# gRPC over libcurl: HTTP/2 with prior knowledge (h2c) on the daemon's unix
# socket or loopback TCP (../shared/reference/r-grpc.md). Unary calls and
# server-streaming calls work; client streaming is never needed (the contract
# keeps it out of what R calls).
#
# Each message travels in a frame: one flag byte (0: not compressed), the
# length as 4 bytes big-endian, then the serialized protobuf. The status
# comes in the "grpc-status"/"grpc-message" trailers, with the details
# (google.rpc.Status holding an ErrorInfo) base64-encoded in
# "grpc-status-details-bin".

pf_grpc_codes <- c(
  "ok", "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
  "already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
  "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss",
  "unauthenticated"
)

# Condition kinds of the package for gRPC codes it distinguishes.
pf_grpc_kind <- function(code) {
  name <- pf_grpc_codes[code + 1L]
  known <- c("invalid_argument", "deadline_exceeded", "not_found", "failed_precondition",
             "unavailable", "data_loss", "internal", "permission_denied",
             "unauthenticated", "already_exists", "unimplemented")
  if (!is.na(name) && name %in% known) name else "rpc"
}

# Parse an address into what curl needs: list(url_base, socket, tls).
pf_parse_address <- function(address) {
  pf_assert_string(address, "address")
  if (startsWith(address, "unix:")) {
    path <- sub("^unix:(//)?", "", address)
    return(list(base = "http://localhost", socket = path, tls = FALSE, address = address))
  }
  tls <- grepl("^(https|grpcs)://", address)
  hostport <- sub("^[a-z]+://", "", address)
  hostport <- sub("/+$", "", hostport)
  scheme <- if (tls) "https" else "http"
  list(base = paste0(scheme, "://", hostport), socket = NULL, tls = tls, address = address)
}

pf_frame <- function(payload) {
  n <- length(payload)
  c(as.raw(0L), as.raw(bitwAnd(bitwShiftR(n, c(24L, 16L, 8L, 0L)), 255L)), payload)
}

pf_frame_length <- function(bytes, at) {
  sum(as.numeric(as.integer(bytes[(at + 1L):(at + 4L)])) * c(16777216, 65536, 256, 1))
}

# Split a body into complete frames; returns list(messages = list of raw,
# rest = the bytes of an incomplete last frame).
pf_unframe <- function(bytes) {
  messages <- list()
  at <- 1L
  total <- length(bytes)
  while (total - at + 1L >= 5L) {
    if (bytes[[at]] != as.raw(0L)) {
      pf_throw("internal", "the core sent a compressed gRPC message, which is not supported")
    }
    len <- pf_frame_length(bytes, at)
    if (total - at + 1L < 5L + len) {
      break
    }
    start <- at + 5L
    messages[[length(messages) + 1L]] <- if (len > 0) bytes[start:(start + len - 1L)] else raw(0)
    at <- start + len
  }
  rest <- if (at <= total) bytes[at:total] else raw(0)
  list(messages = messages, rest = rest)
}

pf_grpc_handle <- function(conn, payload, timeout) {
  handle <- curl::new_handle(
    http_version = 5L, post = TRUE, postfields = pf_frame(payload),
    forbid_reuse = TRUE, connecttimeout = 10L
  )
  if (!is.null(conn$socket)) {
    curl::handle_setopt(handle, unix_socket_path = conn$socket)
  }
  if (isTRUE(conn$tls)) {
    curl::handle_setopt(handle, http_version = 3L)
  }
  if (!is.null(timeout) && is.finite(timeout)) {
    curl::handle_setopt(handle, timeout_ms = as.integer(timeout * 1000))
  }
  headers <- c("Content-Type" = "application/grpc", "TE" = "trailers",
               "User-Agent" = "polyflow-r/grpc")
  if (nzchar(conn$token %||% "")) {
    headers <- c(headers, "Authorization" = paste("Bearer", conn$token))
  }
  do.call(curl::handle_setheaders, c(list(handle), as.list(headers)))
  handle
}

`%||%` <- function(x, y) if (is.null(x)) y else x

# Headers and trailers of a response as a named character vector (last wins).
pf_response_headers <- function(raw_headers) {
  lines <- unlist(curl::parse_headers(raw_headers, multiple = TRUE), use.names = FALSE)
  lines <- lines[grepl(":", lines, fixed = TRUE) & !startsWith(lines, "HTTP/")]
  keys <- tolower(trimws(sub(":.*$", "", lines)))
  values <- trimws(sub("^[^:]*:", "", lines))
  out <- values
  names(out) <- keys
  out[!duplicated(keys, fromLast = TRUE)]
}

pf_b64_decode <- function(text) {
  text <- gsub("[[:space:]]", "", text)
  text <- gsub("-", "+", gsub("_", "/", text, fixed = TRUE), fixed = TRUE)
  pad <- (4L - nchar(text) %% 4L) %% 4L
  jsonlite::base64_dec(paste0(text, strrep("=", pad)))
}

# Reason and metadata of a failed call, from its status details (NULLs when absent).
pf_status_details <- function(details) {
  out <- list(reason = "", metadata = list(), details = list())
  if (is.null(details) || !nzchar(details)) {
    return(out)
  }
  status <- tryCatch(pf_parse("rpc.Status", pf_b64_decode(details)), error = function(e) NULL)
  if (is.null(status)) {
    return(out)
  }
  for (any in status$details) {
    type <- sub("^.*/", "", any$type_url)
    if (type == "google.rpc.ErrorInfo") {
      info <- pf_parse("rpc.ErrorInfo", any$value)
      out$reason <- info$reason
      keys <- vapply(info$metadata, function(e) e$key, "")
      vals <- lapply(info$metadata, function(e) e$value)
      out$metadata <- stats::setNames(vals, keys)
    } else {
      out$details[[type]] <- any$value
    }
  }
  out
}

pf_header <- function(headers, name, default = NA_character_) {
  value <- unname(headers[name])
  if (is.na(value)) default else value
}

pf_check_status <- function(headers, method, status_code) {
  grpc_status <- pf_header(headers, "grpc-status")
  if (is.na(grpc_status)) {
    if (!is.null(status_code) && status_code != 200L) {
      pf_throw("unavailable", sprintf("the core answered %s with HTTP status %s",
                                      method, status_code), code = 14L, reason = "")
    }
    pf_throw("internal", sprintf("the core's answer to %s has no gRPC status", method),
             code = 13L, reason = "")
  }
  code <- as.integer(grpc_status)
  if (code == 0L) {
    return(invisible(TRUE))
  }
  message <- utils::URLdecode(pf_header(headers, "grpc-message", ""))
  details <- pf_status_details(pf_header(headers, "grpc-status-details-bin", ""))
  pf_throw(
    pf_grpc_kind(code), if (nzchar(message)) message else sprintf("%s failed", method),
    code = code, reason = details$reason, metadata = details$metadata,
    details = details$details, method = method
  )
}

pf_curl_failed <- function(conn, method, error) {
  text <- conditionMessage(error)
  if (grepl("[Tt]imeout|timed out", text)) {
    pf_throw("deadline_exceeded", sprintf("%s to the core at %s timed out: %s",
                                          method, conn$address, text), code = 4L, reason = "")
  }
  pf_throw("unavailable", sprintf("cannot reach the core at %s (%s): %s",
                                  conn$address, method, text), code = 14L, reason = "")
}

# A unary call. `method` is "runtime.RuntimeService/GetServerInfo" style:
# "<domain>.<Service>/<Method>". Returns the response message.
pf_grpc_unary <- function(conn, method, request, response_type, timeout = 60) {
  path <- pf_method_path(method)
  handle <- pf_grpc_handle(conn, pf_bytes(request), timeout)
  response <- tryCatch(
    curl::curl_fetch_memory(paste0(conn$base, "/", path), handle = handle),
    error = function(e) pf_curl_failed(conn, path, e)
  )
  headers <- pf_response_headers(response$headers)
  pf_check_status(headers, path, response$status_code)
  frames <- pf_unframe(response$content)$messages
  if (length(frames) == 0L) {
    pf_throw("internal", sprintf("the core's answer to %s holds no message", path))
  }
  pf_parse(response_type, frames[[1L]])
}

# A server-streaming call: `on_message(message)` is called for each response
# as it arrives. Returns invisibly once the stream ends with status OK.
pf_grpc_stream <- function(conn, method, request, response_type, on_message, timeout = NULL) {
  path <- pf_method_path(method)
  handle <- pf_grpc_handle(conn, pf_bytes(request), timeout)
  buffer <- raw(0)
  receive <- function(chunk) {
    buffer <<- c(buffer, chunk)
    parsed <- pf_unframe(buffer)
    buffer <<- parsed$rest
    for (bytes in parsed$messages) {
      on_message(pf_parse(response_type, bytes))
    }
  }
  response <- tryCatch(
    curl::curl_fetch_stream(paste0(conn$base, "/", path), receive, handle = handle),
    polyflow_error = function(e) stop(e),
    error = function(e) pf_curl_failed(conn, path, e)
  )
  headers <- pf_response_headers(response$headers)
  pf_check_status(headers, path, response$status_code)
  invisible(TRUE)
}

pf_method_path <- function(method) {
  parts <- strsplit(method, "/", fixed = TRUE)[[1]]
  paste0(pf_full_type(parts[[1]]), "/", parts[[2]])
}
