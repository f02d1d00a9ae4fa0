"""A switch looping to its own step four times, for resume; see _resume_control (labels
loop:<counter>)."""

from _resume_control import checkpoint
from polyflow import FlowSpec, step


class ResumeLoopFlow(FlowSpec):
    @step
    def start(self):
        self.counter = 0
        self.visits = []
        self.next(self.loop)

    @step
    def loop(self):
        self.counter += 1
        checkpoint(f"loop:{self.counter}")
        self.visits = [*self.visits, self.counter]
        self.state = "again" if self.counter < 4 else "done"
        self.next({"again": self.loop, "done": self.end}, condition="state")

    @step
    def end(self):
        print(f"visited {self.visits}")


if __name__ == "__main__":
    ResumeLoopFlow()
