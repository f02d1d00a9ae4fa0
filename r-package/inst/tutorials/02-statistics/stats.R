# Episode 02: statistics with a foreach.
#
# Computes, for every genre, the median and quartiles of the box office gross:
# one task per genre (a foreach), joined into one data frame.
#
#   Rscript stats.R run
#
# The join's `inputs` hold one input per genre, in the foreach's order.

library(polyflow)

movie_data_default <- function() {
  here <- file.path("..", "data", "movies.csv")
  if (file.exists(here)) normalizePath(here) else
    system.file("tutorials", "data", "movies.csv", package = "polyflow")
}

flow <- pf_flow("MovieStatsFlow", doc = "Gross box office statistics of every movie genre.") |>
  pf_parameter("movie_data", default = movie_data_default(), help = "The movie data (a CSV file).") |>
  pf_step("start", function(self) {
    self$dataframe <- utils::read.csv(self$movie_data, stringsAsFactors = FALSE)
    self$genres <- sort(unique(unlist(strsplit(self$dataframe$genres, "|", fixed = TRUE))))
  }, next_step = "compute_statistics", foreach = "genres",
  doc = "Read the movies and list their genres; then one task per genre.") |>
  pf_step("compute_statistics", function(self) {
    self$genre <- self$input
    cat("Computing statistics for", self$genre, "\n")
    movies <- self$dataframe
    gross <- movies$gross[grepl(self$genre, movies$genres, fixed = TRUE)]
    quartiles <- stats::quantile(gross, c(0.25, 0.5, 0.75), names = FALSE)
    self$quartiles <- quartiles
    self$count <- length(gross)
  }, next_step = "join", doc = "The quartiles of the gross of one genre.") |>
  pf_step("join", function(self, inputs) {
    rows <- lapply(inputs, function(inp) {
      data.frame(genre = inp$genre, count = inp$count, q1 = inp$quartiles[[1]],
                 median = inp$quartiles[[2]], q3 = inp$quartiles[[3]])
    })
    self$stats <- do.call(rbind, unname(rows))
  }, next_step = "end", doc = "Gather the statistics into one data frame.") |>
  pf_step("end", function(self) {
    print(self$stats[order(-self$stats$median), ], row.names = FALSE)
  })

pf_main(flow)
