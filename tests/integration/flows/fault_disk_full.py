"""A step that stores a large incompressible artifact (for a full disk), after a start step
that stores small ones."""

import os

from polyflow import FlowSpec, Parameter, step


class FaultDiskFullFlow(FlowSpec):
    size = Parameter("size", default=3 * 1024 * 1024)

    @step
    def start(self):
        self.small = {"kept": True}
        self.next(self.big)

    @step
    def big(self):
        self.payload = os.urandom(self.size)
        self.next(self.end)

    @step
    def end(self):
        self.payload_size = len(self.payload)


if __name__ == "__main__":
    FaultDiskFullFlow()
