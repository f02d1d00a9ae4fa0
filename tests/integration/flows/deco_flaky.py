"""A step that fails on its first attempt only; no decorator (``--with retry`` fixes it)."""

from polyflow import FlowSpec, current, step


class FlakyFlow(FlowSpec):
    @step
    def start(self):
        if current.retry_count == 0:
            raise ConnectionError("the service hiccuped")
        self.attempts = current.retry_count + 1
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FlakyFlow()
