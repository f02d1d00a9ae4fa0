"""A foreach over a list, using self.input, self.index and foreach_stack, then a join."""

from polyflow import FlowSpec, step


class ForeachFlow(FlowSpec):
    @step
    def start(self):
        self.items = ["apple", "banana", "cherry"]
        self.next(self.process, foreach="items")

    @step
    def process(self):
        self.item = self.input
        self.position = self.index
        self.stack = self.foreach_stack()
        print(f"item {self.index}: {self.input}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.results = [inp.item.upper() for inp in inputs]
        self.positions = [inp.position for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        print(",".join(self.results))


if __name__ == "__main__":
    ForeachFlow()
