"""@timeout under @retry: the first attempt sleeps past the limit, the retry is quick.

``TIMEOUT_BLOCK_ALARM=1`` makes the sleeping attempt block SIGALRM (as code stuck in C
would not see it), so only the core's backstop can stop it; then no retry follows.
"""

import os
import signal
import time

from polyflow import FlowSpec, current, retry, step, timeout

BLOCK_ALARM = os.environ.get("TIMEOUT_BLOCK_ALARM") == "1"


class TimeoutFlow(FlowSpec):
    @retry(times=0 if BLOCK_ALARM else 1, minutes_between_retries=0)
    @timeout(seconds=1 if BLOCK_ALARM else 2)
    @step
    def start(self):
        print(f"attempt {current.retry_count}")
        if current.retry_count == 0:
            if BLOCK_ALARM:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(60)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    TimeoutFlow()
