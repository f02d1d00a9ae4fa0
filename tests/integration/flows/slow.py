"""A flow that sleeps in its start step (for Ctrl-C and concurrent runs)."""

import time

from polyflow import FlowSpec, Parameter, step


class SlowFlow(FlowSpec):
    seconds = Parameter("seconds", default=1.0)

    @step
    def start(self):
        print("sleeping", flush=True)
        time.sleep(self.seconds)
        self.slept = self.seconds
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SlowFlow()
