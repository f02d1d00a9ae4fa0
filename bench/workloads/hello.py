"""hello: start -> end, one tiny artifact."""

from metaflow import FlowSpec, step


class HelloFlow(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.end)

    @step
    def end(self):
        print("hello", self.x)


if __name__ == "__main__":
    HelloFlow()
