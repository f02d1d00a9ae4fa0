# `tag add|remove|replace|list`: change and show the user tags of runs, as the
# Python CLI does (python-sdk/polyflow/_cli/_tag.py), with the same options,
# messages and output.
#
# Only user tags change; system tags (`user:`, `runtime:`, `python_version:`,
# `polyflow_version:`) are fixed when a run starts, and the core refuses any
# change to them. `add`, `remove` and `replace` need `--run-id` (the error names
# the latest run), and find the run in the current namespace unless
# `--namespace` names another (an empty value: global). Output goes to standard
# output; with `--quiet` (before the command) it is one parseable line per
# group: `<run(s)> ; <system tags> ; <user tags>`, or with `--group-by-tag`
# `user:<tag> ; <runs>` / `system:<tag> ; <runs>`.
#
# The small helpers shared with `dump` (pf_cli_prog, pf_cli_parse, pf_py_quote,
# pf_cli_rpc_error) live here too.

pf_tag_help <- c(
  add = "Add user tags to a run.",
  list = "List the tags of runs: every run of the flow by default.",
  remove = "Remove user tags from a run.",
  replace = "Remove and add user tags of a run in one atomic change; removals come first."
)

pf_tag_list_flags <- c("all", "my-runs", "hide-system-tags", "group-by-tag", "group-by-run",
                       "flat")

# The script's name in usage lines.
pf_cli_prog <- function(flow) {
  if (nzchar(flow$source_file %||% "")) basename(flow$source_file) else flow$name
}

# pf_parse_options() plus a check that every option is known (a usage error otherwise).
pf_cli_parse <- function(args, options = character(), flags = character(),
                         repeatable = character()) {
  parsed <- pf_parse_options(args, flags = c(flags, "help"), repeatable = repeatable)
  unknown <- setdiff(names(parsed$options), c(options, flags, "help"))
  if (length(unknown)) {
    pf_throw("usage", sprintf("No such option: --%s", unknown[[1L]]))
  }
  parsed
}

# A string as Python's repr() shows it: in single quotes unless it holds one.
pf_py_quote <- function(x) {
  quote <- if (grepl("'", x, fixed = TRUE) && !grepl("\"", x, fixed = TRUE)) "\"" else "'"
  encodeString(x, quote = quote)
}

# Python's sorted() of a set of strings: unique, by code point (not the locale).
pf_py_sorted <- function(x) {
  sort(unique(as.character(x)), method = "radix")
}

# Re-raise an error of a call to the core with its code and reason appended, as
# the Python CLI prints them: "<message> [INVALID_ARGUMENT/SYSTEM_TAG_IMMUTABLE]".
pf_cli_rpc_error <- function(e) {
  code <- e$code
  if (is.numeric(code) && length(code) == 1L && !is.na(code)) {
    name <- toupper(pf_grpc_codes[code + 1L])
    if (is.na(name)) name <- "UNKNOWN"
    reason <- e$reason %||% ""
    label <- if (!nzchar(reason) || identical(reason, name)) name else paste0(name, "/", reason)
    e$message <- paste0(conditionMessage(e), " [", label, "]")
  }
  stop(e)
}

pf_tag_usage <- function(flow, command = NULL) {
  prog <- pf_cli_prog(flow)
  run_options <- c(
    "  --run-id TEXT     The run to change (required; the error names the latest).",
    "  --namespace TEXT  Find the run in this namespace instead of the current one;",
    "                    empty means global."
  )
  lines <- switch(command %||% "",
    add = ,
    remove = c(sprintf("Usage: Rscript %s tag %s [OPTIONS] TAGS...", prog, command), "",
               paste0("  ", pf_tag_help[[command]]), "", "Options:", run_options,
               "  -h, --help        Show this message and exit."),
    replace = c(sprintf("Usage: Rscript %s tag replace [OPTIONS]", prog), "",
                paste0("  ", pf_tag_help[["replace"]]), "", "Options:", run_options,
                "  --add TEXT        A tag to add (repeatable).",
                "  --remove TEXT     A tag to remove (repeatable).",
                "  -h, --help        Show this message and exit."),
    list = c(sprintf("Usage: Rscript %s tag list [OPTIONS] [RUN_ID]", prog), "",
             paste0("  ", pf_tag_help[["list"]]), "", "Options:",
             "  --run-id TEXT       List the tags of this run only.",
             "  --all               Every run of the flow (the default).",
             "  --my-runs           Only the runs in your namespace (user:<you>).",
             "  --hide-system-tags  Leave system tags out.",
             "  --group-by-tag      For each tag, list the runs carrying it.",
             "  --group-by-run      List the tags of each run separately.",
             "  --flat              One tag per line, no grouping.",
             "  -h, --help          Show this message and exit."),
    c(sprintf("Usage: Rscript %s tag [OPTIONS] COMMAND [ARGS]...", prog), "",
      "  Change or list the user tags of runs; system tags are fixed.", "", "Options:",
      "  -h, --help  Show this message and exit.", "", "Commands:",
      sprintf("  %-8s %s", names(pf_tag_help), pf_tag_help))
  )
  paste0(paste(lines, collapse = "\n"), "\n")
}

# The tags of one run, or the union of several runs' tags under one title
# (Python's RunTags).
pf_run_tags <- function(title, user = character(), system = character()) {
  list(title = title, user = pf_py_sorted(user), system = pf_py_sorted(system))
}

pf_tags_joined <- function(tags, empty = "(none)") {
  if (length(tags)) paste(pf_py_sorted(tags), collapse = ", ") else empty
}

# Lines listing each group's user tags, then its system tags unless hidden.
pf_format_tags_by_run <- function(groups, hide_system = FALSE, quiet = FALSE) {
  lines <- character()
  for (group in groups) {
    if (quiet) {
      system <- if (hide_system) character() else group$system
      lines <- c(lines, sprintf("%s ; %s ; %s", group$title,
                                paste(pf_py_sorted(system), collapse = ","),
                                paste(pf_py_sorted(group$user), collapse = ",")))
      next
    }
    lines <- c(lines, group$title, paste0("    user tags:   ", pf_tags_joined(group$user)))
    if (!hide_system) {
      lines <- c(lines, paste0("    system tags: ", pf_tags_joined(group$system)))
    }
  }
  lines
}

# Lines listing, for each tag, the runs that carry it (user tags first, each kind
# by tag; the runs in the order given).
pf_format_tags_by_tag <- function(runs, hide_system = FALSE, quiet = FALSE) {
  system <- logical()
  tags <- character()
  titles <- character()
  for (run in runs) {
    kinds <- list(user = unique(run$user), system = if (!hide_system) unique(run$system))
    for (kind in names(kinds)) {
      found <- as.character(kinds[[kind]])
      system <- c(system, rep(kind == "system", length(found)))
      tags <- c(tags, found)
      titles <- c(titles, rep(run$title, length(found)))
    }
  }
  keys <- which(!duplicated(data.frame(system, tags)))
  keys <- keys[order(system[keys], tags[keys], method = "radix")]
  vapply(keys, function(i) {
    carriers <- titles[system == system[[i]] & tags == tags[[i]]]
    kind <- if (system[[i]]) "system" else "user"
    if (quiet) {
      sprintf("%s:%s ; %s", kind, tags[[i]], paste(carriers, collapse = ","))
    } else {
      sprintf("%s tag %s: %s", kind, pf_py_quote(tags[[i]]), paste(carriers, collapse = ", "))
    }
  }, "")
}

# The lines of `tag list` for the runs found (a list of pf_run_tags()).
pf_tag_list_lines <- function(runs, hide_system = FALSE, group_by_tag = FALSE,
                              group_by_run = FALSE, flat = FALSE, quiet = FALSE) {
  user <- unlist(lapply(runs, `[[`, "user"))
  system <- unlist(lapply(runs, `[[`, "system"))
  if (flat) {
    return(pf_py_sorted(c(user, if (!hide_system) system)))
  }
  if (group_by_tag) {
    return(pf_format_tags_by_tag(runs, hide_system, quiet))
  }
  if (group_by_run) {
    return(pf_format_tags_by_run(runs, hide_system, quiet))
  }
  union <- pf_run_tags(paste(vapply(runs, `[[`, "", "title"), collapse = ", "), user, system)
  pf_format_tags_by_run(list(union), hide_system, quiet)
}

# The option conflicts of `tag list` (usage errors), checked before the core is asked.
pf_tag_list_check <- function(run_id, list_all, my_runs, group_by_tag, group_by_run, flat) {
  if (list_all && my_runs) {
    pf_throw("usage", "--all cannot be used together with --my-runs")
  }
  if (!is.null(run_id) && (list_all || my_runs)) {
    pf_throw("usage", "--run-id cannot be used together with --all or --my-runs")
  }
  if (group_by_tag && group_by_run) {
    pf_throw("usage", "--group-by-tag cannot be used together with --group-by-run")
  }
  if (flat && (group_by_tag || group_by_run)) {
    pf_throw("usage", "--flat cannot be used together with a --group-by option")
  }
  invisible(TRUE)
}

# The namespace `--namespace` asks for: the current one when absent, global when empty.
pf_tag_namespace_for <- function(option) {
  if (is.null(option)) {
    return(pf_get_namespace())
  }
  if (nzchar(option)) option else NULL
}

# The run `--run-id` names (a polyflow_run), checked to be in the namespace; the
# namespace is left set for the change that follows.
pf_tag_run_to_change <- function(flow, run_id, namespace_option) {
  ns <- pf_tag_namespace_for(namespace_option)
  shown <- ns %||% "(global)"
  pf_namespace(ns)
  never_ran <- sprintf("No run of %s found: run the flow before tagging.", flow)
  latest <- tryCatch(pf_latest_run(flow),
                     polyflow_error_not_found = function(e) pf_throw_not_found(never_ran))
  if (is.null(latest)) {
    if (is.null(ns)) {
      pf_throw_not_found(never_ran)
    }
    pf_throw("namespace_mismatch", sprintf(paste0(
      "No run of %s found in namespace %s; choose another with --namespace ",
      "(an empty value means every namespace)."
    ), flow, shown), namespace = ns)
  }
  if (is.null(run_id)) {
    pf_throw_invalid_argument(sprintf(
      "Please give the run to tag with --run-id. The latest run of %s in namespace %s is %s.",
      flow, shown, latest$id
    ))
  }
  if (!nzchar(run_id) || grepl("/", run_id, fixed = TRUE)) {
    pf_throw("usage", sprintf("Invalid value for '--run-id': %s is not a run id",
                              pf_py_quote(run_id)))
  }
  pathspec <- paste(flow, run_id, sep = "/")
  tryCatch(
    pf_checked_run(flow, run_id),
    polyflow_error_not_found = function(e) {
      pf_throw_not_found(sprintf("Run %s does not exist.", pathspec), pathspec = pathspec)
    },
    polyflow_error_namespace_mismatch = function(e) {
      pf_throw("namespace_mismatch", sprintf(paste0(
        "Run %s is not in namespace %s; choose its namespace with --namespace ",
        "(an empty value means every namespace)."
      ), pathspec, shown), namespace = ns)
    }
  )
}

# Print the run's tags after a change.
pf_tag_report <- function(run, user_tags, console) {
  if (!console$quiet) {
    console$print("Operation successful. New tags:")
  }
  group <- pf_run_tags(run$pathspec, user_tags, run$system_tags)
  for (line in pf_format_tags_by_run(list(group), quiet = console$quiet)) console$print(line)
}

# `tag add` and `tag remove`.
pf_cli_tag_change <- function(flow, args, console, command) {
  parsed <- pf_cli_parse(args, options = c("run-id", "namespace"))
  opts <- parsed$options
  if (!is.null(opts[["help"]])) {
    cat(pf_tag_usage(flow, command))
    return(0L)
  }
  tags <- parsed$positional
  if (!length(tags)) {
    pf_throw("usage", "Missing argument 'TAGS...'.")
  }
  run <- pf_tag_run_to_change(flow$name, opts[["run-id"]], opts[["namespace"]])
  change <- if (command == "add") pf_add_tags else pf_remove_tags
  user <- tryCatch(change(run$pathspec, tags), polyflow_error = pf_cli_rpc_error)
  pf_tag_report(run, user, console)
  0L
}

# `tag replace --add A --remove B`: one atomic change, removals first.
pf_cli_tag_replace <- function(flow, args, console) {
  parsed <- pf_cli_parse(args, options = c("run-id", "namespace", "add", "remove"),
                         repeatable = c("add", "remove"))
  opts <- parsed$options
  if (!is.null(opts[["help"]])) {
    cat(pf_tag_usage(flow, "replace"))
    return(0L)
  }
  if (length(parsed$positional)) {
    pf_throw("usage", sprintf("Got unexpected extra argument (%s)", parsed$positional[[1L]]))
  }
  to_add <- opts[["add"]] %||% character()
  to_remove <- opts[["remove"]] %||% character()
  # As in Metaflow: a change that only adds or only removes has its own command.
  if (!length(to_add) && !length(to_remove)) {
    pf_throw("usage", "give at least one tag to --add and one to --remove")
  }
  if (!length(to_remove)) {
    pf_throw("usage", "give at least one tag to --remove, or use 'tag add'")
  }
  if (!length(to_add)) {
    pf_throw("usage", "give at least one tag to --add, or use 'tag remove'")
  }
  run <- pf_tag_run_to_change(flow$name, opts[["run-id"]], opts[["namespace"]])
  user <- tryCatch(pf_replace_tags(run$pathspec, remove = to_remove, add = to_add),
                   polyflow_error = pf_cli_rpc_error)
  pf_tag_report(run, user, console)
  0L
}

# The runs `tag list` shows (pf_run_tags() each): one run (any namespace), your
# runs, or every run, newest first.
pf_tag_runs_to_list <- function(flow, run_id, my_runs) {
  as_tags <- function(run) pf_run_tags(run$pathspec, run$tags, run$system_tags)
  if (!is.null(run_id)) {
    pf_namespace(NULL)
    pathspec <- paste(flow, run_id, sep = "/")
    run <- tryCatch(pf_checked_run(flow, run_id, check = FALSE),
                    polyflow_error_not_found = function(e) {
                      pf_throw_not_found(sprintf("Run %s does not exist.", pathspec))
                    })
    return(list(as_tags(run)))
  }
  ns <- if (my_runs) paste0("user:", pf_current_user()) else NULL
  pf_namespace(ns)
  never_ran <- sprintf("Cannot list tags: %s has never been run.", flow)
  runs <- tryCatch(pf_list_runs(flow),
                   polyflow_error_not_found = function(e) pf_throw_not_found(never_ran))
  if (!length(runs)) {
    if (is.null(ns)) {
      pf_throw_not_found(never_ran)
    }
    pf_throw("namespace_mismatch", sprintf("You (%s) have no run of %s.", ns, flow),
             namespace = ns)
  }
  lapply(runs, as_tags)
}

# `tag list [RUN_ID]`.
pf_cli_tag_list <- function(flow, args, console) {
  parsed <- pf_cli_parse(args, options = "run-id", flags = pf_tag_list_flags)
  opts <- parsed$options
  if (!is.null(opts[["help"]])) {
    cat(pf_tag_usage(flow, "list"))
    return(0L)
  }
  if (length(parsed$positional) > 1L) {
    pf_throw("usage", sprintf("Got unexpected extra argument (%s)", parsed$positional[[2L]]))
  }
  run_id <- opts[["run-id"]]
  if (!is.null(run_id) && length(parsed$positional)) {
    pf_throw("usage", "give the run either with --run-id or as an argument, not both")
  }
  if (length(parsed$positional)) {
    run_id <- parsed$positional[[1L]]
  }
  set <- function(flag) !is.null(opts[[flag]])
  pf_tag_list_check(run_id, set("all"), set("my-runs"), set("group-by-tag"),
                    set("group-by-run"), set("flat"))
  runs <- pf_tag_runs_to_list(flow$name, run_id, set("my-runs"))
  lines <- pf_tag_list_lines(runs, hide_system = set("hide-system-tags"),
                             group_by_tag = set("group-by-tag"),
                             group_by_run = set("group-by-run"), flat = set("flat"),
                             quiet = console$quiet)
  for (line in lines) console$print(line)
  0L
}

# `tag COMMAND ...`: the namespace the command sets is restored when it ends.
pf_cli_tag <- function(flow, rest, console = pf_console()) {
  if (!length(rest) || rest[[1L]] %in% c("-h", "--help")) {
    cat(pf_tag_usage(flow))
    return(if (length(rest)) 0L else 2L)
  }
  old <- pf_state$namespace
  on.exit(pf_state$namespace <- old, add = TRUE)
  command <- rest[[1L]]
  args <- rest[-1L]
  switch(command,
    add = ,
    remove = pf_cli_tag_change(flow, args, console, command),
    replace = pf_cli_tag_replace(flow, args, console),
    list = pf_cli_tag_list(flow, args, console),
    pf_throw("usage", sprintf("No such command '%s'.", command))
  )
}
