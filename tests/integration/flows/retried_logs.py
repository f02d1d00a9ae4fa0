"""A step that prints which attempt it is, and fails on its first attempt (``@retry`` runs it
again), for ``logs --attempt``."""

from polyflow import FlowSpec, current, retry, step


class RetriedLogsFlow(FlowSpec):
    @retry(times=1, minutes_between_retries=0)
    @step
    def start(self):
        print(f"output of attempt {current.retry_count}")
        if current.retry_count == 0:
            raise RuntimeError("the first attempt fails")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RetriedLogsFlow()
