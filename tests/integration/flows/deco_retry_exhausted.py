"""@retry(times=1): a step that fails on every attempt, so the run fails."""

from polyflow import FlowSpec, current, retry, step


class RetryExhaustedFlow(FlowSpec):
    @retry(times=1, minutes_between_retries=0)
    @step
    def start(self):
        print(f"attempt {current.retry_count}")
        raise RuntimeError(f"always failing (attempt {current.retry_count})")
        self.next(self.end)  # unreachable, but the static graph needs it

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RetryExhaustedFlow()
