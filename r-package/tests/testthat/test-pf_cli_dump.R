# `dump RUN/STEP[/TASK]`: the parsing and formatting helpers, then the command
# against a real daemon.

# Run the flow's command line in this process: list(status, stdout, stderr).
dump_cli <- function(flow, ...) {
  err <- capture.output(
    out <- capture.output(status <- pf_main(flow, c(...), exit = FALSE)),
    type = "message"
  )
  list(status = status, stdout = out, stderr = paste(err, collapse = "\n"))
}

fake_artifact <- function(size, type_name = "character") {
  list(size = size, type_name = type_name)
}

test_that("pathspecs are run/step or run/step/task, optionally after the flow's name", {
  parse <- polyflow:::pf_parse_task_path
  expect_equal(parse("F", "12/start"), list(flow = "F", run = "12", step = "start", task = NULL))
  expect_equal(parse("F", " /12/start/3/ ")$task, "3")
  expect_equal(parse("F", "F/12/start")$run, "12")
  expect_equal(parse("F", "F/12/start/3")$task, "3")
  expect_equal(parse("F", "G/12/start")$task, "start")  # another name is a run id
  for (bad in c("nope", "12//start", "F", "1/2/3/4", "", "//")) {
    expect_error(parse("F", bad), "is not run_id/step_name or run_id/step_name/task_id",
                 class = "polyflow_error_usage")
  }
  expect_equal(polyflow:::pf_task_path_pathspec(parse("F", "12/start")), "F/12/start")
})

test_that("artifacts are chosen by name, privately or not, and missing names reported", {
  select <- polyflow:::pf_dump_select
  names <- c("zeta", "_private", "alpha", "Beta")
  expect_equal(select(names), list(names = c("Beta", "alpha", "zeta"), missing = character()))
  expect_equal(select(names, private = TRUE)$names, c("Beta", "_private", "alpha", "zeta"))
  expect_equal(select(names, include = c("zeta", "nothere", "_private")),
               list(names = "zeta", missing = "nothere"))
  expect_equal(select(names, include = "_private", private = TRUE)$names, "_private")
  expect_equal(polyflow:::pf_dump_split_names(" a, b ,,c "), c("a", "b", "c"))
  expect_equal(polyflow:::pf_dump_split_names(NULL), character())
})

test_that("values print as a one-line deparse, cut with a marker", {
  format <- polyflow:::pf_dump_format_value
  expect_equal(format("hi there", 1000), "\"hi there\"")
  expect_equal(format(42, 1000), "42")
  expect_equal(format(c(a = 1L), 1000), "c(a = 1L)")
  df <- data.frame(a = 1:2, b = c("x", "y"))
  expect_equal(format(df, 1000), paste0(
    "structure(list(a = 1:2, b = c(\"x\", \"y\")), class = \"data.frame\", ",
    "row.names = c(NA, -2L))"
  ))
  long <- format(as.numeric(1:300), 5000)
  expect_false(grepl("\n", long))
  expect_match(long, "^c\\(1, 2, 3, .*, 299, 300\\)$")
  expect_false(grepl("  ", long))
  expect_equal(format(function(x) {
    x + 1
  }, 1000), "function (x) { x + 1 }")
  expect_equal(format("a\nb", 1000), "\"a\\nb\"")
  cut <- format(strrep("x", 300), 200)
  expect_equal(cut, paste0("\"", strrep("x", 199),
                           "... [truncated: the deparse has 302 characters]"))
})

test_that("a value is loaded only when small enough, and one that fails shows a marker", {
  text <- polyflow:::pf_dump_value_text
  never <- function(a) stop("must not load")
  expect_equal(text(fake_artifact(5002), 1000, never),
               "<not loaded: 5002 bytes stored, over --max-value-size 1000>")
  expect_equal(text(fake_artifact(10), 0, never), "<not loaded: --max-value-size is 0>")
  expect_equal(text(fake_artifact(10), 10, function(a) "hi"), "\"hi\"")
  failing <- function(a) {
    pf_throw("conversion", "artifact 'things' (builtins.set) cannot be read in R")
  }
  expect_equal(text(fake_artifact(36, "builtins.set"), 1000, failing),
               paste("<cannot load: ConversionError: artifact 'things' (builtins.set)",
                     "cannot be read in R>"))
  expect_equal(text(fake_artifact(3), 1000, function(a) stop("boom")),
               "<cannot load: simpleError: boom>")
  expect_equal(polyflow:::pf_dump_line("n", fake_artifact(4, "numeric"), "42"),
               "n [size: 4 type: numeric] = 42")
  expect_equal(polyflow:::pf_dump_line("big", fake_artifact(1e7), "<x>"),
               "big [size: 10000000 type: character] = <x>")
})

test_that("dump options: defaults, flags, sizes, and usage errors", {
  options <- polyflow:::pf_dump_options
  plain <- options("12/start")
  expect_equal(plain[c("pathspec", "private", "max_value_size", "include")],
               list(pathspec = "12/start", private = FALSE, max_value_size = 1000L,
                    include = character()))
  expect_null(plain$file)
  given <- options(c("12/start", "--private", "--max-value-size", "0", "--include", "a,b",
                     "--file", "out.rds"))
  expect_equal(given[c("private", "max_value_size", "include", "file")],
               list(private = TRUE, max_value_size = 0L, include = c("a", "b"),
                    file = "out.rds"))
  expect_false(options(c("1/s", "--private", "--no-private"))$private)
  expect_true(options("--help")$help)
  expect_error(options(character()), "Missing argument 'PATHSPEC'", class = "polyflow_error_usage")
  expect_error(options(c("1/s", "2/s")), "unexpected extra argument",
               class = "polyflow_error_usage")
  for (bad in c("-1", "1.5", "lots")) {
    expect_error(options(c("1/s", "--max-value-size", bad)), "--max-value-size",
                 class = "polyflow_error_usage")
  }
  expect_error(options(c("1/s", "--file", tempdir())), "is a directory",
               class = "polyflow_error_usage")
  expect_error(options(c("1/s", "--nope", "x")), "No such option: --nope",
               class = "polyflow_error_usage")
})

test_that("dump prints the artifacts of a task or a step, and writes them to an .rds file", {
  skip_if_no_polyflow_python()
  dir <- local_project()
  file <- file.path(dir, "dump_flow.R")
  writeLines(c(
    "library(polyflow)",
    "flow <- pf_flow('DumpFlow') |>",
    "  pf_step('start', function(self) {",
    "    self$greeting <- 'hi there'",
    "    self$n <- 42",
    "    self$df <- data.frame(a = 1:3, b = c('x', 'y', 'z'))",
    "    self$big <- strrep('x', 5000)",
    "    self$fruits <- list('apple', 'banana', 'cherry')",
    "  }, next_step = 'each', foreach = 'fruits') |>",
    "  pf_step('each', function(self) self$item <- self$input, next_step = 'join') |>",
    "  pf_step('join', function(self, inputs) {",
    "    self$items <- unlist(pf_gather(inputs, 'item'))",
    "  }, next_step = 'end') |>",
    "  pf_step('end', function(self) NULL)",
    "pf_main(flow)"
  ), file)
  ran <- run_rscript(file, "run")
  expect_equal(ran$status, 0L, info = ran$stderr)
  flow <- pf_flow_from_file(file)

  expected <- c(
    paste("big [size: 5002 type: character] =",
          "<not loaded: 5002 bytes stored, over --max-value-size 1000>"),
    paste("df [size: 315 type: data.frame] =",
          "structure(list(a = 1:3, b = c(\"x\", \"y\", \"z\")),",
          "class = \"data.frame\", row.names = c(NA, -3L))"),
    "fruits [size: 27 type: list] = list(\"apple\", \"banana\", \"cherry\")",
    "greeting [size: 10 type: character] = \"hi there\"",
    "n [size: 4 type: numeric] = 42"
  )
  for (pathspec in c("1/start", "1/start/1", "DumpFlow/1/start")) {
    result <- dump_cli(flow, "dump", pathspec)
    expect_equal(result$status, 0L, info = result$stderr)
    expect_equal(sub("^df \\[size: \\d+ ", "df [size: 315 ", result$stdout), expected)
    expect_match(result$stderr, "Artifacts of task DumpFlow/1/start/1:", fixed = TRUE)
  }
  script <- run_rscript(file, c("dump", "1/join"))
  expect_equal(script$status, 0L, info = script$stderr)
  expect_match(script$stdout, paste0("^items \\[size: \\d+ type: character\\] = ",
                                     "c\\(\"apple\", \"banana\", \"cherry\"\\)$"))

  each <- dump_cli(flow, "dump", "1/each", "--include", "item,nothere")
  expect_equal(each$stdout, c("item [size: 7 type: character] = \"apple\"",
                              "item [size: 8 type: character] = \"banana\"",
                              "item [size: 8 type: character] = \"cherry\""))
  expect_equal(lengths(regmatches(each$stderr, gregexpr("Artifacts of task DumpFlow/1/each/",
                                                        each$stderr))), 3L)
  expect_match(each$stderr, "    (no artifact named 'nothere' in DumpFlow/1/each/", fixed = TRUE)
  cut <- dump_cli(flow, "dump", "1/start", "--include", "fruits", "--max-value-size", "30")
  expect_equal(cut$stdout, paste0("fruits [size: 27 type: list] = ",
                                  "list(\"apple\", \"banana\", \"cherr... ",
                                  "[truncated: the deparse has 33 characters]"))
  small <- dump_cli(flow, "dump", "1/start", "--include", "fruits", "--max-value-size", "20")
  expect_equal(small$stdout,
               paste("fruits [size: 27 type: list] =",
                     "<not loaded: 27 bytes stored, over --max-value-size 20>"))
  names_only <- dump_cli(flow, "dump", "1/start", "--max-value-size", "0")
  expect_true(all(endsWith(names_only$stdout, "= <not loaded: --max-value-size is 0>")))
  expect_equal(dump_cli(flow, "dump", "1/start", "--private")$stdout,
               dump_cli(flow, "dump", "1/start", "--no-private")$stdout)
  expect_equal(dump_cli(flow, "dump", "1/start", "--max-value-size", "-1")$status, 2L)

  out <- file.path(dir, "artifacts.rds")
  written <- dump_cli(flow, "--quiet", "dump", "1/start", "--file", out)
  expect_equal(written$status, 0L, info = written$stderr)
  expect_equal(c(written$stdout, written$stderr), c(character(), ""))
  expect_equal(readRDS(out), list("1/start/1" = list(
    big = strrep("x", 5000), df = data.frame(a = 1:3, b = c("x", "y", "z")),
    fruits = list("apple", "banana", "cherry"), greeting = "hi there", n = 42
  )))
  unwritable <- dump_cli(flow, "dump", "1/start", "--file", file.path(dir, "nope", "x.rds"))
  expect_equal(unwritable$status, 1L)
  expect_match(unwritable$stderr, "Error: cannot write .*x.rds")
  loud <- dump_cli(flow, "dump", "1/each", "--file", out, "--include", "item")
  expect_match(loud$stderr, paste("Artifacts written to", out), fixed = TRUE)
  expect_equal(readRDS(out), list("1/each/2" = list(item = "apple"),
                                  "1/each/3" = list(item = "banana"),
                                  "1/each/4" = list(item = "cherry")))

  missing_run <- dump_cli(flow, "dump", "99999/start")
  expect_equal(missing_run$status, 1L)
  expect_match(missing_run$stderr, "'DumpFlow/99999'", fixed = TRUE)
  expect_match(dump_cli(flow, "dump", "1/nope")$stderr, "Step 'DumpFlow/1/nope' does not exist",
               fixed = TRUE)
  expect_match(dump_cli(flow, "dump", "1/start/99999")$stderr,
               "Task 'DumpFlow/1/start/99999' does not exist", fixed = TRUE)
  malformed <- dump_cli(flow, "dump", "nope")
  expect_equal(malformed$status, 2L)
  expect_match(malformed$stderr, "is not run_id/step_name")
  help <- dump_cli(flow, "dump", "--help")
  expect_equal(help$status, 0L)
  expect_match(help$stdout, "dump \\[OPTIONS\\] PATHSPEC", all = FALSE)
})

test_that("dump shows values written by Python, and a marker for one R cannot have", {
  skip_if_no_polyflow_python()
  dir <- local_project()
  writeLines(c(
    "def make(self):",
    "    self.things = {1, 2}",
    "    self.label = 'from python'"
  ), file.path(dir, "py_step.py"))
  file <- file.path(dir, "mixed_flow.R")
  writeLines(c(
    "library(polyflow)",
    "flow <- pf_flow('MixedDumpFlow') |>",
    "  pf_step('start', function(self) self$x <- 1L, next_step = 'py') |>",
    "  pf_step('py', python = pf_python('py_step.py', 'make'), next_step = 'end') |>",
    "  pf_step('end', function(self) NULL)",
    "pf_main(flow)"
  ), file)
  ran <- run_rscript(file, "run")
  expect_equal(ran$status, 0L, info = ran$stderr)
  flow <- pf_flow_from_file(file)
  result <- dump_cli(flow, "dump", "1/py")
  expect_equal(result$status, 0L, info = result$stderr)
  things <- grep("^things ", result$stdout, value = TRUE)
  expect_match(things, "^things \\[size: \\d+ type: builtins.set\\] = <cannot load: ")
  expect_true("x [size: 1 type: integer] = 1L" %in% result$stdout)
  expect_length(result$stdout, 3L)
  # The core converts the string when it can run its converter (rpy2); a marker otherwise.
  label <- grep("^label ", result$stdout, value = TRUE)
  expect_match(label, paste0("^label \\[size: \\d+ type: builtins.str\\] = ",
                             "(\"from python\"|<cannot load: )"))
  # --file writes every value or none: the set fails the dump, and no file is written.
  refused <- dump_cli(flow, "dump", "1/py", "--file", file.path(dir, "all.rds"))
  expect_equal(refused$status, 1L)
  expect_match(refused$stderr, "\nError: .*cannot")
  expect_false(file.exists(file.path(dir, "all.rds")))
  kept <- dump_cli(flow, "dump", "1/py", "--file", file.path(dir, "x.rds"), "--include", "x")
  expect_equal(kept$status, 0L, info = kept$stderr)
  expect_equal(readRDS(file.path(dir, "x.rds")), list("1/py/2" = list(x = 1L)))
})
