"""Broken: no end step."""

from polyflow import FlowSpec, step


class MissingEndFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.middle)

    @step
    def middle(self):
        self.next(self.start)


if __name__ == "__main__":
    MissingEndFlow()
