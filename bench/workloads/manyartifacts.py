"""manyartifacts: many small artifacts set in one step, all read in the next.

The count comes from BENCH_ARTIFACTS (default 1000).
"""

import os

from metaflow import FlowSpec, step

COUNT = int(os.environ.get("BENCH_ARTIFACTS", "1000"))


class ManyArtifactsFlow(FlowSpec):
    @step
    def start(self):
        for i in range(COUNT):
            setattr(self, f"a{i:05d}", {"i": i, "name": f"item-{i}"})
        self.next(self.read)

    @step
    def read(self):
        self.total = sum(getattr(self, f"a{i:05d}")["i"] for i in range(COUNT))
        self.next(self.end)

    @step
    def end(self):
        assert self.total == COUNT * (COUNT - 1) // 2, self.total


if __name__ == "__main__":
    ManyArtifactsFlow()
