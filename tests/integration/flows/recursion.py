"""A switch with a self-loop: 'loop' runs until its counter reaches 3."""

from polyflow import FlowSpec, step


class RecursionFlow(FlowSpec):
    @step
    def start(self):
        self.counter = 0
        self.next(self.loop)

    @step
    def loop(self):
        self.counter += 1
        print(f"iteration {self.counter}")
        self.state = "again" if self.counter < 3 else "done"
        self.next({"again": self.loop, "done": self.end}, condition="state")

    @step
    def end(self):
        print(f"counted to {self.counter}")


if __name__ == "__main__":
    RecursionFlow()
