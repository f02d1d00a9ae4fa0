"""A decorator attribute that does not exist (``tims``)."""

from polyflow import FlowSpec, retry, step


class BadKeywordFlow(FlowSpec):
    @retry(tims=3)
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BadKeywordFlow()
