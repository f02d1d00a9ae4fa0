"""A base flow class, inherited by inherit.py (not run on its own)."""

from polyflow import FlowSpec, Parameter, step


class BaseFlow(FlowSpec):
    scale = Parameter("scale", default=3)
    BASE_CONSTANT = "from the base"

    @step
    def start(self):
        self.values = [1, 2]
        self.next(self.compute)

    @step
    def end(self):
        print(f"result={self.result}")
