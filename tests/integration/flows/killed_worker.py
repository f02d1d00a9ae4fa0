"""A flow whose step prints, then its worker kills itself with SIGKILL (no report, no cleanup)."""

import os
import signal
import sys

from polyflow import FlowSpec, step


class KilledWorkerFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.die)

    @step
    def die(self):
        print("last words before the kill")
        print("a last warning before the kill", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        self.next(self.end)  # unreachable, but the static graph needs it

    @step
    def end(self):
        pass


if __name__ == "__main__":
    KilledWorkerFlow()
