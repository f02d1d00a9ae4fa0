"""foreach: fan out over N items (x*x in each task), then join.

N comes from the environment variable BENCH_FOREACH_N (default 100); run with
``--max-num-splits`` at least N.
"""

import os

from metaflow import FlowSpec, step

N = int(os.environ.get("BENCH_FOREACH_N", "100"))


class ForeachFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(N))
        self.next(self.square, foreach="items")

    @step
    def square(self):
        self.y = self.input * self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(task.y for task in inputs)
        self.next(self.end)

    @step
    def end(self):
        assert self.total == sum(i * i for i in range(N)), self.total


if __name__ == "__main__":
    ForeachFlow()
