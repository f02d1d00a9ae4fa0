"""@retry: a step that fails on its first two attempts, then succeeds.

``RETRY_DELAY_MINUTES`` (read when the file is imported) sets ``minutes_between_retries``.
"""

import os
import time

from polyflow import FlowSpec, current, retry, step

DELAY_MINUTES = float(os.environ.get("RETRY_DELAY_MINUTES", "0"))


class RetryFlow(FlowSpec):
    @retry(times=2, minutes_between_retries=DELAY_MINUTES)
    @step
    def start(self):
        print(f"attempt {current.retry_count} started at {time.time():.6f}")
        self.attempt_seen = current.retry_count
        if current.retry_count < 2:
            raise ValueError(f"flaky failure on attempt {current.retry_count}")
        self.next(self.end)

    @step
    def end(self):
        self.end_retry_count = current.retry_count


if __name__ == "__main__":
    RetryFlow()
