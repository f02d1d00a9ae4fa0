"""Tasks that finish (a foreach and its join, with artifacts), then a step that announces its
worker's pid and waits while $PF_FAULT_DIR/hold exists: the test kills the daemon meanwhile,
then removes the file so that a resumed run goes through."""

import os
import time

from polyflow import FlowSpec, step


def announce(name):
    """Write this process's pid to $PF_FAULT_DIR/<name>.pid (atomically)."""
    folder = os.environ["PF_FAULT_DIR"]
    temporary = os.path.join(folder, f".{name}.{os.getpid()}")
    with open(temporary, "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(temporary, os.path.join(folder, f"{name}.pid"))


class FaultDaemonCrashFlow(FlowSpec):
    @step
    def start(self):
        self.numbers = [1, 2, 3]
        self.blob = b"x" * 100_000
        self.next(self.square, foreach="numbers")

    @step
    def square(self):
        self.squared = self.input * self.input
        self.next(self.gather)

    @step
    def gather(self, inputs):
        self.squares = [inp.squared for inp in inputs]
        self.blob = inputs[0].blob
        self.next(self.wait)

    @step
    def wait(self):
        hold = os.path.join(os.environ["PF_FAULT_DIR"], "hold")
        if os.path.exists(hold):
            announce("wait")
            while os.path.exists(hold):
                time.sleep(0.1)
        self.total = sum(self.squares)
        self.next(self.end)

    @step
    def end(self):
        self.result = f"total {self.total}"


if __name__ == "__main__":
    FaultDaemonCrashFlow()
