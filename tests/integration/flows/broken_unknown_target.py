"""Broken: start goes to a step that does not exist."""

from polyflow import FlowSpec, step


class UnknownTargetFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.nowhere)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UnknownTargetFlow()
