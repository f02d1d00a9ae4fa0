"""@catch when the worker is killed: no exception to catch, so the core's fallback attempt
records the failure and the flow goes on."""

import os
import signal

from polyflow import FlowSpec, catch, current, step


class CatchKilledFlow(FlowSpec):
    @catch(var="crash")
    @step
    def start(self):
        self.attempt_seen = current.retry_count
        if current.retry_count == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CatchKilledFlow()
