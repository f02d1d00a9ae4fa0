# Episode 00: hello world.
#
# A flow of three steps: start -> hello -> end. Each step is an R function of
# `self`; `self$message <- ...` stores an artifact that later steps (and the
# client API, from R or Python) can read.
#
#   Rscript helloworld.R show
#   Rscript helloworld.R run
#
# Then, from R: pf_data(pf_latest_run("HelloFlow"), "message")
# or from Python: Flow("HelloFlow").latest_run.data.message

library(polyflow)

flow <- pf_flow("HelloFlow", doc = "A flow where Polyflow prints 'Hi'.") |>
  pf_step("start", function(self) {
    cat("HelloFlow is starting.\n")
  }, next_step = "hello", doc = "This is the 'start' step. All flows must have a step named 'start'.") |>
  pf_step("hello", function(self) {
    self$message <- "Polyflow says: Hi!"
    cat(self$message, "\n", sep = "")
  }, next_step = "end", doc = "A step for R to say hi.") |>
  pf_step("end", function(self) {
    cat("HelloFlow is all done.\n")
  }, doc = "This is the 'end' step. All flows must have an 'end' step.")

pf_main(flow)
