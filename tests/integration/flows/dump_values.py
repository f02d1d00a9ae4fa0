"""A flow whose start step stores values of several sizes, for ``dump``."""

from polyflow import FlowSpec, step


class DumpValuesFlow(FlowSpec):
    @step
    def start(self):
        self.greeting = "hi there"
        self.numbers = [1, 2, 3]
        self.big = "x" * 5000  # stored in more than 1000 bytes
        self.zeros = bytes(100)  # small when stored, its repr 403 characters
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.numbers)


if __name__ == "__main__":
    DumpValuesFlow()
