# Artifact codecs (docs/datastore.md): how an R value becomes the bytes of an
# artifact, and back.
#
# * "json": written for values that come back exactly from JSON in R and in
#   Python: NULL, TRUE/FALSE, integers, finite doubles, strings (each a
#   length-one vector without attributes or NA), and lists of those (unnamed:
#   a JSON array; with unique non-empty names: an object), nested at most 100
#   levels, at most 1 MiB of text. Doubles are always written with a fraction
#   or an exponent (5 is "5.0"), so that they are read back as doubles.
# * "rds": serialize(x, NULL, version = 3, xdr = TRUE), for everything else.
#
# Reading JSON gives NULL, logical, integer (a JSON integer within R's 32-bit
# range), double, character, unnamed lists (arrays) and named lists (objects):
# the same values the core's converter gives for Python values.

pf_json_max_bytes <- 1048576
pf_json_max_depth <- 100L

pf_sha256 <- function(bytes) {
  paste0("sha256:", digest::digest(bytes, algo = "sha256", serialize = FALSE))
}

# The R name of a value's type, as recorded in ArtifactRef.type_name.
pf_type_name <- function(value) {
  class(value)[[1L]]
}

pf_json_scalar_ok <- function(x) {
  if (!is.null(attributes(x)) || length(x) != 1L || is.na(x)) {
    return(FALSE)
  }
  switch(typeof(x),
    logical = TRUE,
    integer = TRUE,
    double = is.finite(x),
    character = validUTF8(enc2utf8(x)),
    FALSE
  )
}

pf_json_exact <- function(x, depth = 0L) {
  if (is.null(x)) {
    return(TRUE)
  }
  if (is.atomic(x)) {
    return(pf_json_scalar_ok(x))
  }
  if (!is.list(x) || depth >= pf_json_max_depth || is.object(x)) {
    return(FALSE)
  }
  attrs <- attributes(x)
  if (length(setdiff(names(attrs), "names"))) {
    return(FALSE)
  }
  keys <- names(x)
  if (!is.null(keys)) {
    if (anyNA(keys) || !all(nzchar(keys)) || anyDuplicated(keys) || !all(validUTF8(keys))) {
      return(FALSE)
    }
  }
  for (item in x) {
    if (!pf_json_exact(item, depth + 1L)) {
      return(FALSE)
    }
  }
  TRUE
}

pf_json_double <- function(x) {
  for (digits in 15:17) {
    text <- formatC(x, digits = digits, format = "g")
    if (as.numeric(text) == x) {
      break
    }
  }
  text <- sub("^(-?)0+([0-9])", "\\1\\2", trimws(text))
  text <- sub("e([+-])0*([0-9])", "e\\1\\2", text)
  if (!grepl("[.eE]", text)) {
    text <- paste0(text, ".0")
  }
  text
}

pf_json_string <- function(x) {
  as.character(jsonlite::toJSON(enc2utf8(x), auto_unbox = TRUE))
}

# JSON text of a value that pf_json_exact() accepted.
pf_to_json <- function(x) {
  if (is.null(x)) {
    return("null")
  }
  if (is.atomic(x)) {
    return(switch(typeof(x),
      logical = if (x) "true" else "false",
      integer = as.character(x),
      double = pf_json_double(x),
      character = pf_json_string(x)
    ))
  }
  items <- vapply(x, pf_to_json, "", USE.NAMES = FALSE)
  if (!length(x)) {
    return(if (is.null(names(x))) "[]" else "{}")
  }
  if (is.null(names(x))) {
    return(paste0("[", paste(items, collapse = ","), "]"))
  }
  keys <- vapply(names(x), pf_json_string, "", USE.NAMES = FALSE)
  paste0("{", paste0(keys, ":", items, collapse = ","), "}")
}

#' Encode and decode artifact values
#'
#' `pf_encode()` turns an R value into the bytes stored for an artifact:
#' JSON when the value comes back exactly from JSON (in R and in Python),
#' else R serialization (`"rds"`). `pf_decode()` reverses it.
#'
#' @param value Any R value.
#' @return `pf_encode()`: a list with `bytes` (raw), `encoding`, `type_name`,
#'   `size` and `digest` (`"sha256:<hex>"` of the bytes).
#' @family artifacts
#' @export
#' @examples
#' enc <- pf_encode(list(a = 1L, b = "x"))
#' enc$encoding
#' pf_decode(enc$bytes, enc$encoding)
pf_encode <- function(value) {
  bytes <- NULL
  encoding <- "rds"
  if (pf_json_exact(value)) {
    text <- tryCatch(pf_to_json(value), error = function(e) NULL)
    if (!is.null(text)) {
      candidate <- charToRaw(enc2utf8(text))
      if (length(candidate) <= pf_json_max_bytes) {
        bytes <- candidate
        encoding <- "json"
      }
    }
  }
  if (is.null(bytes)) {
    bytes <- serialize(value, NULL, xdr = TRUE, version = 3L)
  }
  list(bytes = bytes, encoding = encoding, type_name = pf_type_name(value),
       size = length(bytes), digest = pf_sha256(bytes))
}

#' @rdname pf_encode
#' @param bytes The stored bytes (raw).
#' @param encoding Their encoding: `"json"` or `"rds"`. Other encodings
#'   (Python's `"pickle-v5"`) are converted by the core first; see
#'   [pf_artifact_value()].
#' @return `pf_decode()`: the value.
#' @export
pf_decode <- function(bytes, encoding) {
  if (identical(encoding, "json")) {
    text <- rawToChar(bytes)
    Encoding(text) <- "UTF-8"
    return(jsonlite::parse_json(text, simplifyVector = FALSE))
  }
  if (identical(encoding, "rds")) {
    return(unserialize(bytes))
  }
  pf_throw("conversion", sprintf("artifacts encoded as \"%s\" cannot be decoded in R", encoding),
           encoding = encoding)
}
