test_that("a parameter's type comes from its default", {
  flow <- pf_flow("F") |>
    pf_parameter("a", default = 1L) |>
    pf_parameter("b", default = 0.5) |>
    pf_parameter("c", default = TRUE) |>
    pf_parameter("d", default = "x") |>
    pf_parameter("e", default = list(k = 1L)) |>
    pf_parameter("f")
  types <- vapply(flow$parameters, function(p) p$type, "")
  expect_equal(unname(types), c("int", "float", "bool", "str", "json", "str"))
  expect_equal(flow$parameters$a$default, 1L)
  expect_error(pf_flow("F") |> pf_parameter("a", default = "x", type = "int"),
               class = "polyflow_error_parameter")
  expect_error(pf_flow("F") |> pf_parameter("a", type = "date"), "type must be")
  expect_error(pf_flow("F") |> pf_parameter("a", default = 1, separator = ","), "needs type str")
})

test_that("values parse by type, with messages naming the parameter", {
  p <- function(type, sep = NULL) list(name = "p", type = type, separator = sep)
  parse <- polyflow:::pf_parse_parameter
  expect_identical(parse(p("int"), "42"), 42L)
  expect_identical(parse(p("int"), "5000000000"), 5e9)
  expect_identical(parse(p("float"), "0.7"), 0.7)
  expect_identical(parse(p("bool"), "yes"), TRUE)
  expect_identical(parse(p("bool"), "false"), FALSE)
  expect_identical(parse(p("str", ","), "a,b"), list("a", "b"))
  expect_identical(parse(p("json"), "{\"a\": [1, 2.5]}"), list(a = list(1L, 2.5)))
  expect_error(parse(p("int"), "4.5"), "parameter 'p'", class = "polyflow_error_parameter")
  expect_error(parse(p("float"), "x"), "not a valid float")
  expect_error(parse(p("bool"), "maybe"), "not a valid boolean")
  expect_error(parse(p("json"), "{"), "not valid JSON")
})

test_that("values come from the command line, the environment, then the default", {
  flow <- pf_flow("F") |>
    pf_parameter("alpha", default = 0.5) |>
    pf_parameter("n", default = 1L) |>
    pf_parameter("tags", default = "a,b", separator = ",") |>
    pf_parameter("need", type = "str", required = TRUE)
  withr::local_envvar(POLYFLOW_RUN_N = "7")
  values <- polyflow:::pf_resolve_parameters(flow, list(alpha = "0.9", need = "x"))
  expect_equal(values, list(alpha = 0.9, n = 7L, tags = list("a", "b"), need = "x"))
  expect_error(polyflow:::pf_resolve_parameters(flow, list()), "Missing value for required")
  expect_equal(polyflow:::pf_parameter_env_var("my-param"), "POLYFLOW_RUN_MY_PARAM")
  expect_equal(polyflow:::pf_parameter_default_json(flow$parameters$alpha), "0.5")
  expect_equal(polyflow:::pf_parameter_default_json(flow$parameters$need), "")
})
