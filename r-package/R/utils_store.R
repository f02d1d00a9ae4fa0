# The data plane: artifact bytes go straight to the local content-addressed
# store when this machine sees it (docs/architecture.md, "The local blob
# store"), else through DatastoreService.
#
# A blob lives at <root>/blobs/<hex[1:2]>/<hex>, holding the magic "PFB1", a
# codec byte (0 raw, 1 zstd) and the payload; the address is the SHA-256 of the
# encoded (uncompressed) bytes. R writes raw blobs (codec 0). It reads raw
# blobs itself and asks the core (ReadBlob) for zstd-compressed ones, which
# base R cannot decompress.

pf_blob_magic <- charToRaw("PFB1")

# A store handle: list(kind, root, local = whether the folder is here, core).
pf_store <- function(kind, root, core = NULL) {
  # The store folder is made on the first write: its root's folder is enough.
  local <- identical(kind, "local") && nzchar(root) && (dir.exists(root) || dir.exists(dirname(root)))
  list(kind = kind, root = root, local = local, core = core)
}

# This process's store, as the core describes it.
pf_client_store <- function() {
  core <- pf_core()
  info <- pf_rpc_store_info(core)
  pf_store(info$kind, info$root, core)
}

pf_blob_path <- function(root, digest) {
  hex <- sub("^sha256:", "", digest)
  if (!grepl("^[0-9a-f]{64}$", hex)) {
    pf_throw_invalid_argument(sprintf("malformed digest %s", encodeString(digest, quote = "\"")))
  }
  file.path(root, "blobs", substr(hex, 1L, 2L), hex)
}

# Write bytes; returns their digest. An existing blob is not rewritten once its
# header and size show it whole (a corrupt one is quarantined and written anew).
pf_store_put <- function(store, bytes, digest = pf_sha256(bytes)) {
  if (!store$local) {
    return(pf_rpc_upload_blob(bytes, core = store$core))
  }
  final <- pf_blob_path(store$root, digest)
  if (pf_blob_looks_whole(store, final, length(bytes))) {
    return(digest)
  }
  dir.create(dirname(final), recursive = TRUE, showWarnings = FALSE)
  tmp_dir <- file.path(store$root, "tmp")
  dir.create(tmp_dir, recursive = TRUE, showWarnings = FALSE)
  tmp <- file.path(tmp_dir, paste0(basename(tempfile("r")), ".tmp"))
  con <- file(tmp, open = "wb")
  ok <- FALSE
  on.exit({
    if (!ok) unlink(tmp)
  })
  tryCatch({
    writeBin(c(pf_blob_magic, as.raw(0L)), con)
    writeBin(bytes, con)
  }, finally = close(con))
  if (file.exists(final)) {
    unlink(tmp)
  } else if (!file.rename(tmp, final)) {
    pf_throw("internal", sprintf("cannot move a blob into place at %s", final))
  }
  ok <- TRUE
  digest
}

# Whether the file at `path` holds a blob of `size` bytes as far as its header
# tells: the magic, and the file's size for a raw blob (a compressed one, which R
# does not write, is taken as it is). A file that fails is quarantined.
pf_blob_looks_whole <- function(store, path, size) {
  info <- file.info(path, extra_cols = FALSE)
  if (is.na(info$size)) {
    return(FALSE)
  }
  con <- file(path, open = "rb")
  header <- tryCatch(readBin(con, "raw", n = 5L), finally = close(con))
  whole <- length(header) == 5L && identical(header[1:4], pf_blob_magic) &&
    (header[[5L]] == as.raw(1L) || (header[[5L]] == as.raw(0L) && info$size == 5 + size))
  if (!whole) {
    pf_blob_quarantine(store, path, info)
  }
  whole
}

# Move a corrupt blob file aside (to <root>/quarantine), so the next writer of
# the same value stores it afresh, unless it changed since `info` was taken
# (another process restored it). Best effort, as in the core.
pf_blob_quarantine <- function(store, path, info) {
  now <- file.info(path, extra_cols = FALSE)
  if (is.na(now$size) || now$size != info$size || now$mtime != info$mtime) {
    return(invisible(FALSE))
  }
  folder <- file.path(store$root, "quarantine")
  dir.create(folder, recursive = TRUE, showWarnings = FALSE)
  invisible(suppressWarnings(file.rename(path, file.path(folder, basename(path)))))
}

# Read a blob's encoded bytes, verified against the digest. A raw blob found
# corrupt is quarantined; the core reads compressed and quarantined ones.
pf_store_get <- function(store, digest) {
  if (store$local) {
    path <- pf_blob_path(store$root, digest)
    info <- file.info(path, extra_cols = FALSE)
    if (!is.na(info$size)) {
      con <- file(path, open = "rb")
      content <- tryCatch(readBin(con, "raw", n = info$size), finally = close(con))
      if (length(content) >= 5L && identical(content[1:4], pf_blob_magic)) {
        codec <- as.integer(content[[5L]])
        if (codec == 0L) {
          bytes <- if (length(content) > 5L) content[6:length(content)] else raw(0)
          found <- pf_sha256(bytes)
          if (!identical(found, digest)) {
            pf_blob_quarantine(store, path, info)
            pf_throw("data_loss", sprintf("blob %s is corrupted: its bytes hash to %s",
                                          digest, found),
                     reason = "BLOB_DIGEST_MISMATCH")
          }
          return(bytes)
        }
      }
    }
  }
  core <- store$core %||% pf_core()
  pf_rpc_read_blob(digest, core = core)
}

# A ref as a plain list.
pf_ref_from_proto <- function(ref) {
  list(name = ref$name, digest = ref$digest, encoding = ref$encoding,
       size = as.numeric(ref$size_bytes), type_name = ref$type_name)
}

pf_ref_to_proto <- function(ref) {
  pf_msg("common.ArtifactRef", name = ref$name, digest = ref$digest, encoding = ref$encoding,
         size_bytes = ref$size, type_name = ref$type_name)
}

# The value of an artifact ref: JSON and rds are decoded here; other encodings
# (Python's pickle) are converted to rds by the core first.
pf_load_ref <- function(store, ref) {
  if (!ref$encoding %in% c("json", "rds")) {
    converted <- tryCatch(
      pf_rpc_convert_blob(ref$digest, ref$encoding, "rds", core = store$core %||% pf_core()),
      polyflow_error_failed_precondition = function(e) {
        pf_throw("conversion", sprintf(
          "artifact %s (%s, encoded as %s) cannot be read in R: %s",
          encodeString(ref$name, quote = "'"), ref$type_name, ref$encoding,
          conditionMessage(e)
        ), encoding = ref$encoding, type_name = ref$type_name)
      }
    )
    ref <- utils::modifyList(ref, converted[c("digest", "encoding", "size", "type_name")])
  }
  pf_decode(pf_store_get(store, ref$digest), ref$encoding)
}

# Store an R value; returns its ref (a plain list).
pf_store_value <- function(store, name, value) {
  encoded <- pf_encode(value)
  digest <- pf_store_put(store, encoded$bytes, encoded$digest)
  list(name = name, digest = digest, encoding = encoded$encoding, size = encoded$size,
       type_name = encoded$type_name)
}
