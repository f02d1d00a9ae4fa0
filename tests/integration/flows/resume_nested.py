"""Two nested foreach levels for resume; see _resume_control (labels inner:<letter><number>,
join_inner:<letter>)."""

from _resume_control import checkpoint
from polyflow import FlowSpec, step


class ResumeNestedFlow(FlowSpec):
    @step
    def start(self):
        self.letters = ["a", "b"]
        self.next(self.outer, foreach="letters")

    @step
    def outer(self):
        self.letter = self.input
        self.numbers = [1, 2, 3]
        self.next(self.inner, foreach="numbers")

    @step
    def inner(self):
        self.pair = f"{self.letter}{self.input}"
        checkpoint(f"inner:{self.pair}")
        self.next(self.join_inner)

    @step
    def join_inner(self, inputs):
        self.pairs = [inp.pair for inp in inputs]
        checkpoint(f"join_inner:{inputs[0].letter}")
        self.next(self.join_outer)

    @step
    def join_outer(self, inputs):
        self.all_pairs = [pair for inp in inputs for pair in inp.pairs]
        self.next(self.end)

    @step
    def end(self):
        print(" ".join(self.all_pairs))


if __name__ == "__main__":
    ResumeNestedFlow()
