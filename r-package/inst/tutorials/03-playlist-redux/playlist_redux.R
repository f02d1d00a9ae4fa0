# Episode 03: reading another flow's results.
#
# Uses the statistics of MovieStatsFlow (episode 02: run it first) to pick the
# genre with the highest median gross, and builds a playlist of it. The client
# API reads runs made by R or Python flows alike.
#
#   Rscript ../02-statistics/stats.R run
#   Rscript playlist_redux.R run

library(polyflow)

movie_data_default <- function() {
  here <- file.path("..", "data", "movies.csv")
  if (file.exists(here)) normalizePath(here) else
    system.file("tutorials", "data", "movies.csv", package = "polyflow")
}

flow <- pf_flow("PlayListReduxFlow", doc = "A playlist of the genre with the best median gross.") |>
  pf_parameter("movie_data", default = movie_data_default(), help = "The movie data (a CSV file).") |>
  pf_parameter("recommendations", default = 3L, help = "The number of movies to recommend.") |>
  pf_step("start", function(self) {
    run <- pf_latest_successful_run("MovieStatsFlow")
    if (is.null(run)) stop("run MovieStatsFlow (episode 02) first")
    stats <- pf_data(run, "stats")
    self$stats_run <- run$pathspec
    self$genre <- stats$genre[[which.max(stats$median)]]
    cat("Using", self$stats_run, "- best genre:", self$genre, "\n")
    self$dataframe <- utils::read.csv(self$movie_data, stringsAsFactors = FALSE)
  }, next_step = "pick_movies", doc = "Read the statistics of the latest MovieStatsFlow run.") |>
  pf_step("pick_movies", function(self) {
    movies <- self$dataframe
    mine <- movies[grepl(self$genre, movies$genres, fixed = TRUE), ]
    mine <- mine[order(-mine$gross), ]
    self$playlist <- utils::head(mine$movie_title, self$recommendations)
  }, next_step = "end", doc = "The highest grossing movies of that genre.") |>
  pf_step("end", function(self) {
    cat("Playlist for the genre '", self$genre, "':\n", sep = "")
    for (i in seq_along(self$playlist)) cat(sprintf("Pick %d: %s\n", i, self$playlist[[i]]))
  })

pf_main(flow)
