#' Add a parameter to a flow
#'
#' Parameters are given on the command line (`Rscript flow.R run --alpha
#' 0.7`), else by the environment variable `POLYFLOW_RUN_<NAME>`, else take
#' their default. Every task reads them as artifacts (`self$alpha`); they are
#' read-only.
#'
#' @param flow A flow made with [pf_flow()].
#' @param name The parameter's name (also the option: `--name`).
#' @param default The default value; `NULL` for none.
#' @param type One of `"str"`, `"int"`, `"float"`, `"bool"`, `"json"`; by
#'   default the type of `default` (character: str, integer: int, double:
#'   float, logical: bool, list: json), else `"str"`.
#' @param help Help text shown by `run --help`.
#' @param required Whether a value must be given.
#' @param separator For strings: split the value on this separator into a
#'   list of strings.
#' @return The flow.
#' @family authoring
#' @export
#' @examples
#' pf_flow("ParamFlow") |>
#'   pf_parameter("alpha", default = 0.5, help = "Learning rate.") |>
#'   pf_parameter("genres", default = "drama,comedy", separator = ",")
pf_parameter <- function(flow, name, default = NULL, type = NULL, help = "", required = FALSE,
                         separator = NULL) {
  pf_assert_class(flow, "polyflow_flow", "flow")
  pf_assert_artifact_name(name, "name")
  pf_assert_string(help, "help", allow_empty = TRUE)
  pf_assert_flag(required, "required")
  if (name %in% c(names(flow$parameters), names(flow$constants))) {
    pf_throw_invalid_argument(sprintf("flow %s already has a parameter or constant named '%s'",
                                      flow$name, name))
  }
  type <- type %||% pf_type_of_default(default)
  if (!type %in% c("str", "int", "float", "bool", "json")) {
    pf_throw_invalid_argument(sprintf(
      "parameter '%s': type must be one of str, int, float, bool, json, not '%s'", name, type
    ))
  }
  if (!is.null(separator)) {
    pf_assert_string(separator, "separator")
    if (type != "str") {
      pf_throw_invalid_argument(sprintf("parameter '%s': a separator needs type str", name))
    }
  }
  if (!is.null(default) && type != "json") {
    default <- pf_check_parameter_default(name, type, default, separator)
  }
  flow$parameters[[name]] <- list(name = name, type = type, default = default, help = help,
                                  required = required, separator = separator)
  flow
}

pf_type_of_default <- function(default) {
  if (is.null(default)) {
    return("str")
  }
  if (is.list(default)) {
    return("json")
  }
  switch(typeof(default), integer = "int", double = "float", logical = "bool",
         character = "str", "json")
}

pf_check_parameter_default <- function(name, type, default, separator) {
  ok <- length(default) == 1L && !is.na(default) && switch(type,
    str = is.character(default),
    int = is.numeric(default) && default == round(default),
    float = is.numeric(default),
    bool = is.logical(default),
    FALSE
  )
  if (!ok && !(type == "str" && !is.null(separator) && is.character(default))) {
    pf_throw_parameter(sprintf("parameter '%s': the default %s is not a %s", name,
                               paste(deparse(default), collapse = ""), type), parameter = name)
  }
  switch(type,
    int = if (abs(default) < .Machine$integer.max) as.integer(default) else as.numeric(default),
    float = as.numeric(default),
    default
  )
}

# The environment variable a parameter is read from.
pf_parameter_env_var <- function(name) {
  paste0("POLYFLOW_RUN_", toupper(gsub("-", "_", name, fixed = TRUE)))
}

# Parse the text of a parameter's value into its R value.
pf_parse_parameter <- function(param, text) {
  name <- param$name
  fail <- function(what) {
    pf_throw_parameter(sprintf("Invalid value for parameter '%s': %s", name, what),
                       parameter = name)
  }
  switch(param$type,
    str = {
      if (!is.null(param$separator)) as.list(strsplit(text, param$separator, fixed = TRUE)[[1]])
      else text
    },
    int = {
      if (!grepl("^\\s*[-+]?[0-9]+\\s*$", text)) {
        fail(sprintf("'%s' is not a valid integer", text))
      }
      value <- as.numeric(text)
      if (abs(value) <= .Machine$integer.max) as.integer(value) else value
    },
    float = {
      value <- suppressWarnings(as.numeric(text))
      if (is.na(value)) fail(sprintf("'%s' is not a valid float", text))
      value
    },
    bool = {
      lower <- tolower(trimws(text))
      if (lower %in% c("true", "1", "yes", "y", "t", "on")) TRUE
      else if (lower %in% c("false", "0", "no", "n", "f", "off")) FALSE
      else fail(sprintf("'%s' is not a valid boolean", text))
    },
    json = tryCatch(
      jsonlite::parse_json(text, simplifyVector = FALSE),
      error = function(e) fail(sprintf("'%s' is not valid JSON", text))
    )
  )
}

# The value of every parameter: command line text, else environment, else default.
pf_resolve_parameters <- function(flow, raw) {
  values <- list()
  for (param in flow$parameters) {
    text <- raw[[param$name]]
    if (is.null(text)) {
      from_env <- Sys.getenv(pf_parameter_env_var(param$name), unset = NA)
      if (!is.na(from_env)) text <- from_env
    }
    if (!is.null(text)) {
      values[param$name] <- list(pf_parse_parameter(param, text))
    } else if (param$required) {
      pf_throw_parameter(sprintf("Missing value for required parameter '%s'", param$name),
                         parameter = param$name)
    } else {
      value <- param$default
      if (!is.null(param$separator) && is.character(value)) {
        value <- as.list(strsplit(value, param$separator, fixed = TRUE)[[1]])
      }
      values[param$name] <- list(value)
    }
  }
  values
}

# A parameter's default as JSON text ("" when there is none).
pf_parameter_default_json <- function(param) {
  if (is.null(param$default)) {
    return("")
  }
  if (pf_json_exact(param$default)) {
    return(pf_to_json(param$default))
  }
  as.character(jsonlite::toJSON(param$default, auto_unbox = TRUE, digits = NA, null = "null"))
}
