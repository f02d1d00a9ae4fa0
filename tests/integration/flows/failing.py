"""A flow whose middle step raises."""

from polyflow import FlowSpec, step


class FailingFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.explode)

    @step
    def explode(self):
        print("about to fail")
        raise ValueError("boom: something went wrong")
        self.next(self.end)  # unreachable, but the static graph needs it

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FailingFlow()
