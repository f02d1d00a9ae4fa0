"""A step that tries to assign a class-level constant, which is read-only."""

from polyflow import FlowSpec, step


class ConstantWriteFlow(FlowSpec):
    LIMIT = 3

    @step
    def start(self):
        self.before = self.LIMIT
        self.LIMIT = 4
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ConstantWriteFlow()
