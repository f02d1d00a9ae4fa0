"""A flow for worker tests: steps are run one by one with hand-made task specs."""

import os
import sys

from polyflow import FlowSpec, Parameter, current, step


class Point:
    """A class defined in the flow file: its instances pickle by this module's name."""

    def __init__(self, x):
        self.x = x


class WorkerFlow(FlowSpec):
    RATE = 2
    alpha = Parameter("alpha", default=1)

    @step
    def start(self):
        self.data = [1, 2]
        self.keep = {"a": 1}
        self.never_read = "x" * 10
        self.point = Point(3)
        self.seen = {
            "flow": current.flow_name,
            "pathspec": current.pathspec,
            "retry": current.retry_count,
            "user": current.username,
            "graph_steps": sorted(current.graph["steps"]),
            "address": os.environ.get("POLYFLOW_CORE_ADDRESS"),
            "namespace": os.environ.get("POLYFLOW_NAMESPACE"),
            "alpha": self.alpha,
            "rate": self.RATE,
        }
        self.next(self.middle)

    @step
    def middle(self):
        self.data.append(3)
        assert self.keep == {"a": 1}
        assert self.point.x == 3
        self.next(self.end)

    @step
    def end(self):
        pass

    @step
    def boom(self):
        self.partial = 1
        raise ValueError("bad value\nsecond line")

    @step
    def gen(self):
        self.g = (i for i in range(3))
        self.next(self.end)

    @step
    def exiting(self):
        sys.exit(3)

    @step
    def fan(self):
        self.items = ["p", "q"]
        self.next(self.each, foreach="items")

    @step
    def each(self):
        self.got = (self.input, self.index)
        self.next(self.gather)

    @step
    def gather(self, inputs):
        self.got = [i.got for i in inputs]
        self.inputs_seen = [i.input for i in inputs]
        self.merge_artifacts(inputs, exclude=["got"])
        self.next(self.end)


if __name__ == "__main__":
    WorkerFlow()
