"""A foreach of 6 splits for resume; see _resume_control (labels work:<index>)."""

import os

from _resume_control import checkpoint
from polyflow import FlowSpec, step


class ResumeForeachFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(6))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.square = self.input * self.input
        self.noise = os.urandom(2048)
        checkpoint(f"work:{self.input}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = [inp.square for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        print(f"squares {self.squares}")


if __name__ == "__main__":
    ResumeForeachFlow()
