# Episode 01: parameters and branches.
#
# Makes a playlist of movies of one genre, and picks a bonus movie of any other
# genre in a parallel branch; a join brings the two together.
#
#   Rscript playlist.R show
#   Rscript playlist.R run --genre comedy --recommendations 3
#
# Parameters are given as --name value, else read from POLYFLOW_RUN_<NAME>,
# else take their defaults.

library(polyflow)

movie_data_default <- function() {
  here <- file.path("..", "data", "movies.csv")
  if (file.exists(here)) normalizePath(here) else
    system.file("tutorials", "data", "movies.csv", package = "polyflow")
}

flow <- pf_flow("PlayListFlow", doc = paste(
  "A flow to help you build your perfect playlist: a list of movies of one genre,",
  "and a bonus movie of another genre."
)) |>
  pf_parameter("movie_data", default = movie_data_default(), help = "The movie data (a CSV file).") |>
  pf_parameter("genre", default = "Sci-Fi", help = "Filter movies for a particular genre.") |>
  pf_parameter("recommendations", default = 5L, help = "The number of movies to recommend.") |>
  pf_step("start", function(self) {
    self$dataframe <- utils::read.csv(self$movie_data, stringsAsFactors = FALSE)
  }, next_step = c("bonus_movie", "genre_movies"),
  doc = "Parse the CSV file and store the table; then branch.") |>
  pf_step("bonus_movie", function(self) {
    movies <- self$dataframe
    other <- movies[!grepl(self$genre, movies$genres, ignore.case = TRUE), ]
    set.seed(nchar(self$genre))
    pick <- other[sample(nrow(other), 1L), ]
    self$bonus <- list(title = pick$movie_title, genres = pick$genres)
  }, next_step = "join", doc = "Pick a movie from a genre that is not the one asked for.") |>
  pf_step("genre_movies", function(self) {
    movies <- self$dataframe
    mine <- movies[grepl(self$genre, movies$genres, ignore.case = TRUE), ]
    set.seed(self$recommendations)
    self$movies <- mine$movie_title[sample(nrow(mine))]
  }, next_step = "join", doc = "Filter the movies by genre and shuffle them.") |>
  pf_step("join", function(self, inputs) {
    self$playlist <- utils::head(inputs$genre_movies$movies, self$recommendations)
    self$bonus <- inputs$bonus_movie$bonus
  }, next_step = "end", doc = "Join the two branches: keep the playlist and the bonus movie.") |>
  pf_step("end", function(self) {
    cat("Playlist for movies in genre '", self$genre, "':\n", sep = "")
    for (i in seq_along(self$playlist)) cat(sprintf("Pick %d: %s\n", i, self$playlist[[i]]))
    cat(sprintf("Bonus pick: '%s' from '%s'\n", self$bonus$title, self$bonus$genres))
  }, doc = "Print the playlist and the bonus movie.")

pf_main(flow)
