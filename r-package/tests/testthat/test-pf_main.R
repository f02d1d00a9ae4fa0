cli_flow <- function() {
  pf_flow("CliFlow", doc = "A flow for the CLI tests.") |>
    pf_parameter("alpha", default = 0.5, help = "A rate.") |>
    pf_step("start", function(self) NULL, next_step = "end") |>
    pf_step("end", function(self) NULL)
}

test_that("help lists the commands and the run options", {
  out <- capture.output(status <- pf_main(cli_flow(), "--help", exit = FALSE))
  expect_equal(status, 0L)
  expect_match(paste(out, collapse = "\n"), "Commands:.*run .*Run the flow")
  out <- capture.output(pf_main(cli_flow(), c("run", "--help"), exit = FALSE))
  expect_match(paste(out, collapse = "\n"), "--alpha FLOAT  A rate. \\[default: 0.5\\] \\[env: POLYFLOW_RUN_ALPHA\\]")
})

test_that("unknown options and commands are usage errors (status 2)", {
  status <- function(args) {
    err <- capture.output(out <- capture.output(code <- pf_main(cli_flow(), args, exit = FALSE)),
                          type = "message")
    attr(code, "stderr") <- err
    code
  }
  expect_equal(as.vector(status("--nope")), 2L)
  explode <- status("explode")
  expect_equal(as.vector(explode), 2L)
  expect_match(attr(explode, "stderr"), "No such command 'explode'", all = FALSE)
  beta <- status(c("run", "--beta", "1"))
  expect_match(attr(beta, "stderr"), "No such option: --beta", all = FALSE)
  expect_equal(as.vector(status(c("run", "--max-workers", "0"))), 2L)
})

test_that("a bad parameter value fails before the core is contacted", {
  withr::local_envvar(POLYFLOW_CORE_ADDRESS = paste0("unix:", tempfile()))
  err <- capture.output(
    code <- pf_main(cli_flow(), c("--quiet", "run", "--alpha", "fast"), exit = FALSE),
    type = "message"
  )
  expect_equal(code, 1L)
  expect_match(err, "Invalid value for parameter 'alpha': 'fast' is not a valid float")
})

test_that("options parse as --name value and --name=value", {
  parsed <- polyflow:::pf_parse_options(c("--a", "1", "--b=2", "--tag", "x", "--tag=y", "pos",
                                          "--flag"), flags = "flag", repeatable = "tag")
  expect_equal(parsed$options, list(a = "1", b = "2", tag = c("x", "y"), flag = "true"))
  expect_equal(parsed$positional, "pos")
  expect_error(polyflow:::pf_parse_options("--a"), class = "polyflow_error_usage")
})

test_that("--with specs become decorators", {
  deco <- polyflow:::pf_parse_decospec("retry:times=3,minutes_between_retries=0")
  expect_equal(deco$name, "retry")
  expect_equal(deco$attributes, list(times = "3", minutes_between_retries = "0"))
  expect_equal(polyflow:::pf_parse_decospec("catch")$attributes, list())
  expect_equal(polyflow:::pf_parse_decospec("env:vars={\"A\":\"1\"}")$attributes$vars,
               "{\"A\":\"1\"}")
})

test_that("a flow file loads without running its command line", {
  file <- withr::local_tempfile(fileext = ".R")
  writeLines(c("library(polyflow)", "flow <- pf_flow('FileFlow') |>",
               "  pf_step('start', function(self) NULL, next_step = 'end') |>",
               "  pf_step('end', function(self) NULL)", "pf_main(flow)"), file)
  flow <- pf_flow_from_file(file)
  expect_equal(flow$name, "FileFlow")
  expect_equal(flow$source_file, normalizePath(file))
  expect_error(pf_flow_from_file(file, "Other"), class = "polyflow_error_not_found")
})

test_that("resume reruns a failed run from its failure, cloning what succeeded", {
  skip_if_no_polyflow_python()
  dir <- local_project()
  file <- file.path(dir, "resume.R")
  writeLines(c(
    "library(polyflow)",
    "flow <- pf_flow('ResumeFlow') |>",
    "  pf_parameter('n', default = 3L) |>",
    "  pf_step('start', function(self) self$x <- self$n * 2L, next_step = 'middle') |>",
    "  pf_step('middle', function(self) {",
    "    if (Sys.getenv('BREAK') == '1') stop('broken middle')",
    "    self$y <- self$x + 1L",
    "  }, next_step = 'end') |>",
    "  pf_step('end', function(self) NULL)",
    "pf_main(flow)"
  ), file)
  withr::with_envvar(c(BREAK = "1"), failed <- run_rscript(file, c("run", "--n", "5")))
  expect_equal(failed$status, 1L)
  resumed <- run_rscript(file, "resume")
  expect_equal(resumed$status, 0L, info = resumed$stderr)
  pf_namespace(NULL)
  withr::defer(pf_default_namespace())
  run <- pf_latest_run("ResumeFlow")
  expect_equal(run$origin_run, "ResumeFlow/1")
  expect_equal(pf_data(run, "y"), 11L)
  expect_equal(pf_get_task(paste0(run$pathspec, "/start/1"))$origin_task, "ResumeFlow/1/start/1")
})
