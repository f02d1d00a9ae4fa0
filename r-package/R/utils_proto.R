# The contract's messages, read at run time by RProtoBuf from the .proto files
# shipped in inst/proto (identical to the repository's proto/, see
# tools/sync-proto.sh) plus the well-known types (Debian: libprotobuf-dev).
# Nothing is generated; messages are made with pf_msg("runtime.GetRunRequest").

pf_state <- new.env(parent = emptyenv())

pf_proto_packages <- c(
  common = "polyflow.api.common.v1.",
  runtime = "polyflow.api.runtime.v1.",
  metadata = "polyflow.api.metadata.v1.",
  datastore = "polyflow.api.datastore.v1.",
  errordetails = "polyflow.api.errordetails.v1.",
  rpc = "google.rpc."
)

# "runtime.TaskSpec" -> "polyflow.api.runtime.v1.TaskSpec"
pf_full_type <- function(type) {
  domain <- sub("\\..*$", "", type)
  if (domain %in% names(pf_proto_packages)) {
    return(paste0(pf_proto_packages[[domain]], sub("^[^.]*\\.", "", type)))
  }
  type
}

pf_proto_dir <- function() {
  dir <- system.file("proto", package = "polyflow")
  if (!nzchar(dir)) {
    pf_throw("internal", "the polyflow package has no proto folder (a broken installation)")
  }
  dir
}

# Folders holding google/protobuf/timestamp.proto, where the well-known types
# are imported from.
pf_wkt_include <- function() {
  candidates <- c(
    strsplit(Sys.getenv("POLYFLOW_PROTO_INCLUDE"), .Platform$path.sep, fixed = TRUE)[[1]],
    "/usr/include", "/usr/local/include", "/opt/homebrew/include"
  )
  candidates <- candidates[nzchar(candidates)]
  for (dir in candidates) {
    if (file.exists(file.path(dir, "google", "protobuf", "timestamp.proto"))) {
      return(dir)
    }
  }
  pf_throw(
    "internal",
    paste0(
      "cannot find the well-known protobuf types (google/protobuf/timestamp.proto); ",
      "install libprotobuf-dev or set POLYFLOW_PROTO_INCLUDE to the folder that holds them"
    )
  )
}

pf_load_protos <- function() {
  if (isTRUE(pf_state$protos_loaded)) {
    return(invisible(TRUE))
  }
  dir <- pf_proto_dir()
  files <- list.files(dir, pattern = "\\.proto$", recursive = TRUE)
  RProtoBuf::readProtoFiles2(files = files, protoPath = c(dir, pf_wkt_include()))
  extra <- system.file("rpc", package = "polyflow")
  RProtoBuf::readProtoFiles2(
    files = "google/rpc/status.proto", protoPath = c(extra, pf_wkt_include())
  )
  pf_state$protos_loaded <- TRUE
  invisible(TRUE)
}

# The descriptor of a message type.
pf_type <- function(type) {
  pf_load_protos()
  RProtoBuf::P(pf_full_type(type))
}

# A new message; fields given as arguments.
pf_msg <- function(.type, ...) {
  RProtoBuf::new(pf_type(.type), ...)
}

# Parse serialized bytes into a message.
pf_parse <- function(type, bytes) {
  RProtoBuf::read(pf_type(type), bytes)
}

# Serialize a message to raw bytes.
pf_bytes <- function(message) {
  RProtoBuf::serialize(message, NULL)
}

# Whether a singular message field is set.
pf_has <- function(message, field) {
  isTRUE(RProtoBuf::has(message, field))
}

# A google.protobuf.Timestamp field as POSIXct (NULL when unset).
pf_time <- function(message, field) {
  if (!pf_has(message, field)) {
    return(NULL)
  }
  ts <- message[[field]]
  as.POSIXct(as.numeric(ts$seconds) + ts$nanos / 1e9, origin = "1970-01-01", tz = "UTC")
}

# Enum numbers of the contract (values as in proto/polyflow/api/common/v1/enums.proto).
pf_enum <- list(
  language = c(unspecified = 0L, python = 1L, r = 2L),
  transition = c(unspecified = 0L, linear = 1L, branch = 2L, foreach = 3L, switch = 4L,
                 invalid = 5L),
  step_kind = c(unspecified = 0L, start = 1L, linear = 2L, split = 3L, foreach = 4L,
                join = 5L, switch = 6L, end = 7L),
  parameter = c(unspecified = 0L, str = 1L, int = 2L, float = 3L, bool = 4L, json = 5L,
                file = 6L),
  run_state = c(unspecified = 0L, pending = 1L, running = 2L, succeeded = 3L, failed = 4L),
  task_state = c(unspecified = 0L, pending = 1L, running = 2L, succeeded = 3L, failed = 4L),
  log_stream = c(unspecified = 0L, stdout = 1L, stderr = 2L)
)

# The name of an enum number ("succeeded" for 3 in run_state).
pf_enum_name <- function(enum, value) {
  values <- pf_enum[[enum]]
  name <- names(values)[match(as.integer(value), values)]
  if (is.na(name)) "unspecified" else name
}
