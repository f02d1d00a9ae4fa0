from polyflow import FlowSpec, step


class NestedForeachFlow(FlowSpec):
    @step
    def start(self):
        self.outer = ["a", "b"]
        self.next(self.mid, foreach="outer")

    @step
    def mid(self):
        self.inner = [1, 2, 3]
        self.next(self.leaf, foreach="inner")

    @step
    def leaf(self):
        self.pair = (self.foreach_stack()[0][2], self.input)
        self.next(self.join_inner)

    @step
    def join_inner(self, inputs):
        self.pairs = [i.pair for i in inputs]
        self.next(self.join_outer)

    @step
    def join_outer(self, inputs):
        self.all_pairs = [p for i in inputs for p in i.pairs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    NestedForeachFlow()
