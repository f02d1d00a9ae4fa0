# A flow as the contract's FlowGraph. The rules a graph must follow live in the
# core (RuntimeService.ValidateGraph), shared by every language: the R package
# sends what the flow declares and prints the core's verdict.

# Lines of the pf_step() calls in a flow file, by step name (best effort: the
# first string literal of each call).
pf_step_lines <- function(file) {
  if (!nzchar(file) || !file.exists(file)) {
    return(integer())
  }
  exprs <- tryCatch(parse(file, keep.source = TRUE), error = function(e) NULL)
  data <- if (is.null(exprs)) NULL else utils::getParseData(exprs)
  if (is.null(data) || !nrow(data)) {
    return(integer())
  }
  data <- data[data$terminal, , drop = FALSE]
  data <- data[order(data$line1, data$col1), , drop = FALSE]
  lines <- integer()
  calls <- which(data$token == "SYMBOL_FUNCTION_CALL" & data$text == "pf_step")
  for (i in calls) {
    later <- data[seq.int(i + 1L, nrow(data)), , drop = FALSE]
    literal <- which(later$token == "STR_CONST")
    if (length(literal)) {
      name <- eval(parse(text = later$text[[literal[[1L]]]]))
      if (is.null(lines[name]) || is.na(lines[name])) {
        lines[name] <- data$line1[[i]]
      }
    }
  }
  lines
}

pf_decorator_proto <- function(decorator) {
  message <- pf_msg("common.DecoratorSpec", name = decorator$name)
  if (length(decorator$attributes)) {
    message$attributes <- lapply(names(decorator$attributes), function(key) {
      pf_msg("common.DecoratorSpec.AttributesEntry", key = key,
             value = decorator$attributes[[key]])
    })
  }
  message
}

pf_transition_proto <- function(step) {
  kinds <- pf_enum$transition
  if (length(step$switch)) {
    transition <- pf_msg("common.Transition", kind = kinds[["switch"]],
                         condition = step$condition)
    transition$switch_cases <- lapply(names(step$switch), function(key) {
      pf_msg("common.Transition.SwitchCasesEntry", key = key, value = step$switch[[key]])
    })
    return(transition)
  }
  if (!length(step$next_step)) {
    return(pf_msg("common.Transition", kind = kinds[["unspecified"]]))
  }
  kind <- if (!is.null(step$foreach)) "foreach" else if (length(step$next_step) > 1L)
    "branch" else "linear"
  transition <- pf_msg("common.Transition", kind = kinds[[kind]],
                       foreach_var = step$foreach %||% "")
  transition$targets <- step$next_step
  transition
}

pf_parameter_proto <- function(param) {
  pf_msg("common.ParameterSpec", name = param$name,
         type = pf_enum$parameter[[param$type]],
         default_json = pf_parameter_default_json(param), required = param$required,
         help = param$help, separator = param$separator %||% "")
}

# The flow's FlowGraph message. `decospecs` are --with decorators added to
# every step that lacks them.
pf_graph_proto <- function(flow, decospecs = list()) {
  lines <- pf_step_lines(flow$source_file)
  steps <- lapply(flow$steps, function(step) {
    decorators <- step$decorators
    for (extra in decospecs) {
      if (!extra$name %in% vapply(decorators, function(d) d$name, "")) {
        decorators <- c(decorators, list(extra))
      }
    }
    spec <- pf_msg(
      "common.StepSpec", name = step$name,
      line = if (is.na(lines[step$name] %||% NA)) 0L else lines[[step$name]],
      is_join = step$join, num_args = as.integer(step$num_args),
      transition = pf_transition_proto(step),
      language = pf_enum$language[[step$language]], doc = step$doc,
      is_start = step$start, is_end = step$end,
      foreign_file = step$foreign_file, foreign_function = step$foreign_function
    )
    if (length(decorators)) {
      spec$decorators <- lapply(decorators, pf_decorator_proto)
    }
    spec
  })
  graph <- pf_msg(
    "common.FlowGraph", flow_name = flow$name, source_file = flow$source_file,
    doc = flow$doc, language = pf_enum$language[["r"]], entrypoint = flow$name
  )
  if (length(steps)) graph$steps <- unname(steps)
  if (length(flow$parameters)) graph$parameters <- unname(lapply(flow$parameters, pf_parameter_proto))
  if (length(flow$decorators)) graph$decorators <- lapply(flow$decorators, pf_decorator_proto)
  if (length(flow$constants)) graph$constants <- names(flow$constants)
  graph
}

# One problem as "<file>:<line>: step '<s>': <message>" (the Python CLI's form).
pf_format_problem <- function(problem, source_file = "") {
  where <- if (nzchar(problem$file)) problem$file else if (nzchar(source_file)) source_file
    else "<flow>"
  if (problem$line > 0L) {
    where <- paste0(where, ":", problem$line)
  }
  if (nzchar(problem$step)) {
    return(sprintf("%s: step '%s': %s", where, problem$step, problem$message))
  }
  sprintf("%s: %s", where, problem$message)
}

pf_problem_from_proto <- function(p) {
  list(rule = p$rule, message = p$message, step = p$step, file = p$file,
       line = as.integer(p$line))
}

# Ask the core to check the graph: list(graph = sent, derived = with kinds,
# problems = list of problems).
pf_validate <- function(flow, decospecs = list(), core = NULL) {
  graph <- pf_graph_proto(flow, decospecs)
  response <- tryCatch(
    pf_rpc_validate_graph(graph, core = core),
    polyflow_error_invalid_argument = function(e) e
  )
  if (inherits(response, "polyflow_error")) {
    problem <- list(rule = response$reason %||% "", message = conditionMessage(response),
                    step = "", file = "", line = 0L)
    return(list(graph = graph, derived = graph, problems = list(problem)))
  }
  problems <- lapply(response$problems, pf_problem_from_proto)
  list(graph = graph, derived = response$graph, problems = problems)
}

pf_kind_names <- c("", "start", "linear", "split", "foreach", "join", "switch", "end")

# The text of `show`: the flow's doc, then each step with its kind,
# decorators and edges (the Python CLI's layout, with R's `self$`).
pf_show_text <- function(graph) {
  out <- character()
  if (nzchar(graph$doc)) {
    out <- c(out, graph$doc, "")
  }
  for (step in graph$steps) {
    kind <- pf_kind_names[step$kind + 1L]
    out <- c(out, paste0("Step ", step$name, if (nzchar(kind)) paste0(" (", kind, ")") else ""))
    if (nzchar(step$doc)) {
      out <- c(out, sub("\\s+$", "", paste0("    ", strsplit(step$doc, "\n")[[1]])))
    }
    if (step$language == pf_enum$language[["python"]]) {
      out <- c(out, sprintf("    python: %s in %s", step$foreign_function, step$foreign_file))
    }
    if (length(step$decorators)) {
      shown <- vapply(step$decorators, function(d) {
        attrs <- stats::setNames(lapply(d$attributes, function(e) e$value),
                                 vapply(d$attributes, function(e) e$key, ""))
        pf_decorator_text(list(name = d$name, attributes = attrs))
      }, "")
      out <- c(out, paste("    decorators:", paste(shown, collapse = " ")))
    }
    t <- step$transition
    edges <- ""
    if (t$kind == pf_enum$transition[["foreach"]]) {
      edges <- sprintf("=> %s (foreach over self$%s)", paste(t$targets, collapse = ", "),
                       t$foreach_var)
    } else if (t$kind == pf_enum$transition[["switch"]]) {
      cases <- vapply(t$switch_cases, function(e) sprintf("'%s': %s", e$key, e$value), "")
      edges <- sprintf("=> {%s} (switch on self$%s)", paste(cases, collapse = ", "),
                       t$condition)
    } else if (t$kind == pf_enum$transition[["invalid"]]) {
      edges <- sprintf("=> (invalid: %s)", t$error)
    } else if (length(t$targets)) {
      edges <- paste("=>", paste(t$targets, collapse = ", "))
    }
    if (nzchar(edges)) {
      out <- c(out, paste0("    ", edges))
    }
    out <- c(out, "")
  }
  paste0(sub("\\s+$", "", paste(out, collapse = "\n")), "\n")
}
