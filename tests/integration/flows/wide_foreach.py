"""A foreach over 'width' items (for --max-num-splits and --max-workers)."""

import time

from polyflow import FlowSpec, Parameter, step


class WideForeachFlow(FlowSpec):
    width = Parameter("width", default=5)
    pause = Parameter("pause", default=0.0)

    @step
    def start(self):
        self.items = list(range(self.width))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.started = time.time()
        time.sleep(self.pause)
        self.finished = time.time()
        self.next(self.join)

    @step
    def join(self, inputs):
        self.spans = sorted((inp.started, inp.finished) for inp in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    WideForeachFlow()
