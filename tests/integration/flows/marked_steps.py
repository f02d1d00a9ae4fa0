"""Entry and terminal steps marked with @step(start=True) and @step(end=True)."""

from polyflow import FlowSpec, step


class MarkedStepsFlow(FlowSpec):
    @step(start=True)
    def begin(self):
        self.value = 10
        self.next(self.middle)

    @step
    def middle(self):
        self.value *= 2
        self.next(self.finish)

    @step(end=True)
    def finish(self):
        print(f"value={self.value}")


if __name__ == "__main__":
    MarkedStepsFlow()
