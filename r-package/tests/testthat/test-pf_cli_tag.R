# `tag add|remove|replace|list`: the formatting and parsing helpers, then the
# commands against a real daemon (as `Rscript flow.R tag ...` and in-process).

tags_of <- function(title, user = character(), system = character()) {
  polyflow:::pf_run_tags(title, user, system)
}

# Run the flow's command line in this process: list(status, stdout, stderr).
tag_cli <- function(flow, ...) {
  err <- capture.output(
    out <- capture.output(status <- pf_main(flow, c(...), exit = FALSE)),
    type = "message"
  )
  list(status = status, stdout = out, stderr = paste(err, collapse = "\n"))
}

tag_flow_file <- function(dir, name = "TagFlow", file = "tag_flow.R") {
  path <- file.path(dir, file)
  writeLines(c(
    "library(polyflow)",
    sprintf("flow <- pf_flow('%s') |>", name),
    "  pf_step('start', function(self) self$x <- 1L, next_step = 'end') |>",
    "  pf_step('end', function(self) NULL)",
    "pf_main(flow)"
  ), path)
  path
}

# Run the flow with Rscript; returns the run id.
run_tag_flow <- function(file, ...) {
  id_file <- tempfile()
  result <- run_rscript(file, c("run", "--run-id-file", id_file, ...))
  expect_equal(result$status, 0L, info = result$stderr)
  readLines(id_file, warn = FALSE)[[1L]]
}

test_that("a run's tags print as Python prints them", {
  group <- tags_of("F/2", c("foo", "bar"), c("user:tester", "runtime:dev"))
  expect_equal(polyflow:::pf_format_tags_by_run(list(group)), c(
    "F/2", "    user tags:   bar, foo", "    system tags: runtime:dev, user:tester"
  ))
  expect_equal(polyflow:::pf_format_tags_by_run(list(group), hide_system = TRUE),
               c("F/2", "    user tags:   bar, foo"))
  expect_equal(polyflow:::pf_format_tags_by_run(list(group), quiet = TRUE),
               "F/2 ; runtime:dev,user:tester ; bar,foo")
  expect_equal(polyflow:::pf_format_tags_by_run(list(group), hide_system = TRUE, quiet = TRUE),
               "F/2 ;  ; bar,foo")
  expect_equal(polyflow:::pf_format_tags_by_run(list(tags_of("F/3")))[[2L]],
               "    user tags:   (none)")
})

test_that("tags sort by code point, not by the locale", {
  group <- tags_of("F/1", c("b", "B", "_x", "a", "Z", "a"))
  expect_equal(group$user, c("B", "Z", "_x", "a", "b"))
  expect_equal(polyflow:::pf_tags_joined(group$user), "B, Z, _x, a, b")
  expect_equal(polyflow:::pf_tags_joined(character()), "(none)")
})

test_that("grouping by tag lists user tags first, then system tags, runs in order", {
  runs <- list(tags_of("F/2", c("shared", "b"), "user:x"), tags_of("F/1", "shared", "user:y"))
  expect_equal(polyflow:::pf_format_tags_by_tag(runs), c(
    "user tag 'b': F/2", "user tag 'shared': F/2, F/1",
    "system tag 'user:x': F/2", "system tag 'user:y': F/1"
  ))
  expect_equal(polyflow:::pf_format_tags_by_tag(runs, hide_system = TRUE, quiet = TRUE),
               c("user:b ; F/2", "user:shared ; F/2,F/1"))
  expect_equal(polyflow:::pf_format_tags_by_tag(list(tags_of("F/1", "it's"))),
               "user tag \"it's\": F/1")
  expect_equal(polyflow:::pf_format_tags_by_tag(list()), character())
})

test_that("tag list groups every run together unless asked otherwise", {
  runs <- list(tags_of("F/2", "b", "user:x"), tags_of("F/1", "a", "user:y"))
  lines <- polyflow:::pf_tag_list_lines
  expect_equal(lines(runs), c("F/2, F/1", "    user tags:   a, b",
                              "    system tags: user:x, user:y"))
  expect_equal(lines(runs, quiet = TRUE), "F/2, F/1 ; user:x,user:y ; a,b")
  expect_equal(lines(runs, group_by_run = TRUE, hide_system = TRUE),
               c("F/2", "    user tags:   b", "F/1", "    user tags:   a"))
  expect_equal(lines(runs, flat = TRUE), c("a", "b", "user:x", "user:y"))
  expect_equal(lines(runs, flat = TRUE, hide_system = TRUE), c("a", "b"))
  expect_equal(lines(runs, group_by_tag = TRUE, hide_system = TRUE),
               c("user tag 'a': F/1", "user tag 'b': F/2"))
})

test_that("conflicting tag list options are usage errors", {
  check <- polyflow:::pf_tag_list_check
  expect_error(check(NULL, TRUE, TRUE, FALSE, FALSE, FALSE), "--all cannot be used together",
               class = "polyflow_error_usage")
  expect_error(check("1", FALSE, TRUE, FALSE, FALSE, FALSE), "--run-id cannot be used",
               class = "polyflow_error_usage")
  expect_error(check(NULL, FALSE, FALSE, TRUE, TRUE, FALSE), "--group-by-tag cannot",
               class = "polyflow_error_usage")
  expect_error(check(NULL, FALSE, FALSE, FALSE, TRUE, TRUE), "--flat cannot",
               class = "polyflow_error_usage")
  expect_true(check("1", FALSE, FALSE, TRUE, FALSE, FALSE))
})

test_that("--namespace means the current namespace, another, or global when empty", {
  withr::local_envvar(POLYFLOW_NAMESPACE = NA, POLYFLOW_USER = "tester")
  pf_default_namespace()
  expect_equal(polyflow:::pf_tag_namespace_for(NULL), "user:tester")
  expect_equal(polyflow:::pf_tag_namespace_for("user:bob"), "user:bob")
  expect_null(polyflow:::pf_tag_namespace_for(""))
})

test_that("options are checked and core errors keep their code and reason", {
  expect_error(polyflow:::pf_cli_parse(c("--nope", "1"), options = "run-id"),
               "No such option: --nope", class = "polyflow_error_usage")
  parsed <- polyflow:::pf_cli_parse(c("--add", "a", "--add=b", "x"), options = "add",
                                    repeatable = "add")
  expect_equal(parsed$options$add, c("a", "b"))
  expect_equal(parsed$positional, "x")
  error <- tryCatch(
    polyflow::pf_throw("invalid_argument", "tag '' is empty", code = 3L, reason = "INVALID_TAG"),
    polyflow_error = function(e) e
  )
  rethrown <- tryCatch(polyflow:::pf_cli_rpc_error(error), polyflow_error = function(e) e)
  expect_equal(conditionMessage(rethrown), "tag '' is empty [INVALID_ARGUMENT/INVALID_TAG]")
  expect_s3_class(rethrown, "polyflow_error_invalid_argument")
  plain <- tryCatch(polyflow::pf_throw_not_found("no run"), polyflow_error = function(e) e)
  expect_equal(conditionMessage(tryCatch(polyflow:::pf_cli_rpc_error(plain),
                                         polyflow_error = function(e) e)), "no run")
  expect_equal(polyflow:::pf_py_quote("a"), "'a'")
})

test_that("tag prints its usage, and refuses unknown subcommands and missing tags", {
  flow <- pf_flow("UsageFlow") |>
    pf_step("start", function(self) NULL, next_step = "end") |>
    pf_step("end", function(self) NULL)
  bare <- tag_cli(flow, "tag")
  expect_equal(bare$status, 2L)
  expect_match(paste(bare$stdout, collapse = "\n"), "tag \\[OPTIONS\\] COMMAND.*replace  Remove")
  expect_equal(tag_cli(flow, "tag", "--help")$status, 0L)
  help <- tag_cli(flow, "tag", "list", "--help")
  expect_equal(help$status, 0L)
  expect_match(help$stdout, "--group-by-tag", all = FALSE)
  nope <- tag_cli(flow, "tag", "nope")
  expect_equal(nope$status, 2L)
  expect_match(nope$stderr, "No such command 'nope'")
  missing <- tag_cli(flow, "tag", "add", "--run-id", "1")
  expect_equal(missing$status, 2L)
  expect_match(missing$stderr, "Missing argument 'TAGS...'")
  for (args in list(character(), c("--add", "x"), c("--remove", "x"))) {
    replaced <- tag_cli(flow, "tag", "replace", "--run-id", "1", args)
    expect_equal(replaced$status, 2L)
  }
  expect_match(tag_cli(flow, "tag", "replace", "--add", "x")$stderr, "or use 'tag add'")
  expect_match(tag_cli(flow, "tag", "list", "--all", "--my-runs")$stderr,
               "--all cannot be used together with --my-runs")
  expect_match(tag_cli(flow, "help")$stdout, "tag \\[OPTIONS\\] COMMAND", all = FALSE)
  expect_match(tag_cli(flow, "--help")$stdout, "^  tag +Change or list", all = FALSE)
})

test_that("tag add, remove and replace change a run's user tags, never its system tags", {
  skip_if_no_polyflow_python()
  dir <- local_project()
  file <- tag_flow_file(dir)
  run <- run_tag_flow(file, "--tag", "first")
  pathspec <- paste0("TagFlow/", run)
  flow <- pf_flow_from_file(file)

  added <- run_rscript(file, c("tag", "add", "--run-id", run, "foo", "bar"))
  expect_equal(added$status, 0L, info = added$stderr)
  expect_match(added$stdout, paste0("Operation successful. New tags:\n", pathspec,
                                    "\n    user tags:   bar, first, foo\n    system tags: "))
  expect_match(added$stdout, "user:tester")
  expect_equal(pf_tags(pathspec), c("bar", "first", "foo"))

  removed <- tag_cli(flow, "tag", "remove", "--run-id", run, "bar", "absent")
  expect_equal(removed$status, 0L)
  expect_true("    user tags:   first, foo" %in% removed$stdout)
  replaced <- tag_cli(flow, "tag", "replace", "--run-id", run, "--remove", "foo", "--add", "baz")
  expect_true("    user tags:   baz, first" %in% replaced$stdout)
  expect_equal(pf_tags(pathspec), c("baz", "first"))
  quiet <- tag_cli(flow, "--quiet", "tag", "add", "--run-id", run, "q")
  expect_equal(quiet$status, 0L)
  expect_match(quiet$stdout, paste0("^", pathspec, " ; [^;]*user:tester[^;]* ; baz,first,q$"))
  pf_namespace("user:tester")
  withr::defer(pf_default_namespace())
  expect_equal(tag_cli(flow, "tag", "add", "--namespace", "", "--run-id", run, "q")$status, 0L)
  expect_equal(pf_get_namespace(), "user:tester")  # the command restored the namespace
  pf_default_namespace()

  for (tag in c("user:tester", "runtime:dev")) {
    refused <- tag_cli(flow, "tag", "remove", "--run-id", run, tag)
    expect_equal(refused$status, 1L)
    expect_match(refused$stderr, sprintf("tag '%s' is a system tag of the run", tag),
                 fixed = TRUE)
    expect_match(refused$stderr, "SYSTEM_TAG_IMMUTABLE")
  }
  prefixed <- tag_cli(flow, "tag", "add", "--run-id", run, "ok", "user:bob")
  expect_equal(prefixed$status, 1L)
  expect_match(prefixed$stderr, "has the prefix of a system tag.*SYSTEM_TAG_IMMUTABLE")
  swap <- tag_cli(flow, "tag", "replace", "--run-id", run, "--remove", "user:tester", "--add", "x")
  expect_match(swap$stderr, "SYSTEM_TAG_IMMUTABLE")
  expect_equal(pf_tags(pathspec), c("baz", "first", "q"))  # nothing half-applied
  same <- tag_cli(flow, "tag", "add", "--run-id", run, "user:tester")
  expect_equal(same$status, 0L)
  expect_true("    user tags:   baz, first, q" %in% same$stdout)

  latest <- tag_cli(flow, "tag", "add", "x")
  expect_equal(latest$status, 1L)
  expect_match(latest$stderr, paste0("Please give the run to tag with --run-id. The latest run ",
                                     "of TagFlow in namespace user:tester is ", run, "."),
               fixed = TRUE)
  empty <- tag_cli(flow, "tag", "add", "--run-id", run, "")
  expect_equal(empty$status, 1L)
  expect_match(empty$stderr, "INVALID_TAG")
  long <- tag_cli(flow, "tag", "add", "--run-id", run, strrep("x", 501))
  expect_match(long$stderr, "500")
  absent <- tag_cli(flow, "tag", "add", "--run-id", "99999", "x")
  expect_equal(absent$status, 1L)
  expect_match(absent$stderr, "Run TagFlow/99999 does not exist.", fixed = TRUE)
  slash <- tag_cli(flow, "tag", "add", "--run-id", "1/2", "x")
  expect_equal(slash$status, 2L)
  expect_match(slash$stderr, "is not a run id")
  never <- tag_cli(pf_flow_from_file(tag_flow_file(dir, "NeverFlow", "never.R")),
                   "tag", "add", "--run-id", "1", "x")
  expect_equal(never$status, 1L)
  expect_match(never$stderr, "No run of NeverFlow found: run the flow before tagging")
})

test_that("tag add finds the run in the namespace --namespace names", {
  skip_if_no_polyflow_python()
  dir <- local_project()
  file <- tag_flow_file(dir)
  run_tag_flow(file)
  theirs <- withr::with_envvar(c(POLYFLOW_USER = "someone-else"), run_tag_flow(file))
  flow <- pf_flow_from_file(file)
  mine <- tag_cli(flow, "tag", "add", "--run-id", theirs, "mine")
  expect_equal(mine$status, 1L)
  expect_match(mine$stderr, sprintf("Run TagFlow/%s is not in namespace user:tester", theirs),
               fixed = TRUE)
  named <- tag_cli(flow, "tag", "add", "--namespace", "user:someone-else", "--run-id", theirs,
                   "mine")
  expect_equal(named$status, 0L, info = named$stderr)
  expect_true("    user tags:   mine" %in% named$stdout)
  anywhere <- tag_cli(flow, "tag", "add", "--namespace", "", "--run-id", theirs, "global")
  expect_true("    user tags:   global, mine" %in% anywhere$stdout)
  nobody <- tag_cli(flow, "tag", "add", "--namespace", "user:nobody", "--run-id", theirs, "x")
  expect_equal(nobody$status, 1L)
  expect_match(nobody$stderr, "No run of TagFlow found in namespace user:nobody")
})

test_that("tag list shows every run, your runs, one run, by tag, by run or flat", {
  skip_if_no_polyflow_python()
  dir <- local_project()
  file <- tag_flow_file(dir)
  mine <- run_tag_flow(file, "--tag", "listed-mine", "--tag", "shared")
  theirs <- withr::with_envvar(c(POLYFLOW_USER = "someone-else"),
                               run_tag_flow(file, "--tag", "listed-theirs", "--tag", "shared"))
  flow <- pf_flow_from_file(file)
  listing <- function(...) {
    result <- tag_cli(flow, ...)
    expect_equal(result$status, 0L, info = result$stderr)
    result$stdout
  }
  all <- listing("tag", "list")
  expect_equal(all[[1L]], sprintf("TagFlow/%s, TagFlow/%s", theirs, mine))
  expect_equal(all[[2L]], "    user tags:   listed-mine, listed-theirs, shared")
  expect_match(all[[3L]], "user:someone-else.*user:tester")
  expect_equal(listing("tag", "list", "--all"), all)

  my <- listing("tag", "list", "--my-runs", "--hide-system-tags")
  expect_equal(my, c(paste0("TagFlow/", mine), "    user tags:   listed-mine, shared"))
  one <- listing("tag", "list", "--run-id", theirs)
  expect_equal(one[1:2], c(paste0("TagFlow/", theirs), "    user tags:   listed-theirs, shared"))
  expect_match(one[[3L]], "^    system tags: ")
  expect_equal(listing("tag", "list", theirs), one)

  by_run <- listing("tag", "list", "--group-by-run", "--hide-system-tags")
  expect_equal(by_run, c(paste0("TagFlow/", theirs), "    user tags:   listed-theirs, shared",
                         paste0("TagFlow/", mine), "    user tags:   listed-mine, shared"))
  by_tag <- listing("tag", "list", "--group-by-tag", "--hide-system-tags")
  expect_true(sprintf("user tag 'shared': TagFlow/%s, TagFlow/%s", theirs, mine) %in% by_tag)
  expect_true(sprintf("user tag 'listed-mine': TagFlow/%s", mine) %in% by_tag)
  expect_false(any(grepl("system tag", by_tag)))
  expect_true(sprintf("system tag 'user:someone-else': TagFlow/%s", theirs) %in%
                listing("tag", "list", "--group-by-tag"))
  expect_equal(listing("tag", "list", "--flat", "--hide-system-tags"),
               c("listed-mine", "listed-theirs", "shared"))
  expect_true("runtime:dev" %in% listing("tag", "list", "--flat"))
  quiet <- listing("--quiet", "tag", "list", "--group-by-tag", "--hide-system-tags")
  expect_true(sprintf("user:shared ; TagFlow/%s,TagFlow/%s", theirs, mine) %in% quiet)

  for (args in list(c("--group-by-tag", "--group-by-run"), c("--flat", "--group-by-run"),
                    c("--run-id", mine, mine), c("--run-id", mine, "--all"))) {
    expect_equal(tag_cli(flow, "tag", "list", args)$status, 2L)
  }
  absent <- tag_cli(flow, "tag", "list", "--run-id", "99999")
  expect_equal(absent$status, 1L)
  expect_match(absent$stderr, "Run TagFlow/99999 does not exist.", fixed = TRUE)
  never <- tag_cli(pf_flow_from_file(tag_flow_file(dir, "NeverFlow", "never.R")), "tag", "list")
  expect_match(never$stderr, "Cannot list tags: NeverFlow has never been run.", fixed = TRUE)
  nobody <- withr::with_envvar(c(POLYFLOW_USER = "nobody"),
                               tag_cli(flow, "tag", "list", "--my-runs"))
  expect_equal(nobody$status, 1L)
  expect_match(nobody$stderr, "You (user:nobody) have no run of TagFlow.", fixed = TRUE)
  script <- run_rscript(file, c("--quiet", "tag", "list", "--my-runs", "--hide-system-tags"))
  expect_equal(script$stdout, sprintf("TagFlow/%s ;  ; listed-mine,shared", mine))
})
