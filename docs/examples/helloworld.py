"""The smallest Polyflow flow: two steps and an artifact."""

from polyflow import FlowSpec, step


class HelloFlow(FlowSpec):
    """A flow that says hello."""

    @step
    def start(self):
        """Store a message."""
        self.message = "Hello from Polyflow!"
        print(self.message)
        self.next(self.end)

    @step
    def end(self):
        """Read it back in the next task."""
        print("The start step said:", self.message)


if __name__ == "__main__":
    HelloFlow()
