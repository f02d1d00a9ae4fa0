"""A wide foreach whose tasks each store a few artifacts (a stress test of metadata writes);
the join checks every split's values."""

from polyflow import FlowSpec, Parameter, step


class FaultStressFlow(FlowSpec):
    width = Parameter("width", default=10)

    @step
    def start(self):
        self.items = list(range(self.width))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.square = self.input * self.input
        self.label = f"item-{self.input}"
        self.pair = (self.index, self.input)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = [inp.square for inp in inputs]
        self.labels = [inp.label for inp in inputs]
        self.pairs = [inp.pair for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.total = sum(self.squares)


if __name__ == "__main__":
    FaultStressFlow()
