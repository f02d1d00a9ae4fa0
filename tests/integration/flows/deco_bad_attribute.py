"""A decorator attribute of the wrong type (``times="3"``), and too many retries."""

from polyflow import FlowSpec, retry, step


class BadAttributeFlow(FlowSpec):
    @retry(times="3")
    @step
    def start(self):
        self.next(self.end)

    @retry(times=5)
    @step
    def end(self):
        pass


if __name__ == "__main__":
    BadAttributeFlow()
