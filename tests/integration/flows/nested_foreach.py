"""Two nested foreach levels, each closed by its own join."""

from polyflow import FlowSpec, step


class NestedForeachFlow(FlowSpec):
    @step
    def start(self):
        self.letters = ["a", "b"]
        self.next(self.outer, foreach="letters")

    @step
    def outer(self):
        self.letter = self.input
        self.numbers = [1, 2, 3]
        self.next(self.inner, foreach="numbers")

    @step
    def inner(self):
        self.pair = f"{self.letter}{self.input}"
        self.stack = [(index, splits) for index, splits, _ in self.foreach_stack()]
        self.next(self.join_inner)

    @step
    def join_inner(self, inputs):
        self.pairs = [inp.pair for inp in inputs]
        self.next(self.join_outer)

    @step
    def join_outer(self, inputs):
        self.all_pairs = [pair for inp in inputs for pair in inp.pairs]
        self.next(self.end)

    @step
    def end(self):
        print(" ".join(self.all_pairs))


if __name__ == "__main__":
    NestedForeachFlow()
