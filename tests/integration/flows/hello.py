"""A linear flow: start -> hello -> end, printing to stdout and stderr."""

import sys

from polyflow import FlowSpec, step


class HelloFlow(FlowSpec):
    """A flow where Polyflow says hi."""

    @step
    def start(self):
        """The first step."""
        print("starting the hello flow")
        self.greeting = "hi"
        self.numbers = [1, 2, 3]
        self.next(self.hello)

    @step
    def hello(self):
        """Say hi on both streams."""
        print(f"Polyflow says {self.greeting}")
        print("a warning on stderr", file=sys.stderr)
        self.message = self.greeting + " there"
        self.next(self.end)

    @step
    def end(self):
        """The last step."""
        self.total = sum(self.numbers)
        print("HelloFlow is all done.")


if __name__ == "__main__":
    HelloFlow()
