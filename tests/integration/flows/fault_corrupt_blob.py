"""A start step storing random bytes ``x`` (stored raw: they do not compress; the same bytes
for the same ``token``), and a step
reading them that first waits for $PF_FAULT_DIR/go-<token> (announcing itself as
``reader``), so that the test can corrupt the blob in between."""

import os
import random
import time

from polyflow import FlowSpec, Parameter, step


def announce(name):
    """Write this process's pid to $PF_FAULT_DIR/<name>.pid (atomically)."""
    folder = os.environ["PF_FAULT_DIR"]
    temporary = os.path.join(folder, f".{name}.{os.getpid()}")
    with open(temporary, "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(temporary, os.path.join(folder, f"{name}.pid"))


class FaultCorruptBlobFlow(FlowSpec):
    token = Parameter("token", default="one")

    @step
    def start(self):
        self.x = random.Random(self.token).randbytes(256)
        self.y = [1, 2, 3]
        self.next(self.reader)

    @step
    def reader(self):
        go = os.path.join(os.environ["PF_FAULT_DIR"], f"go-{self.token}")
        if not os.path.exists(go):
            announce("reader")
            while not os.path.exists(go):
                time.sleep(0.05)
        self.copy_length = len(self.x)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FaultCorruptBlobFlow()
