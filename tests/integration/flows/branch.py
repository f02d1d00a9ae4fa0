"""A static split into two branches, joined with inputs.<branch> and merge_artifacts."""

from polyflow import FlowSpec, step


class BranchFlow(FlowSpec):
    """Branches a and b, then a join."""

    @step
    def start(self):
        self.shared = "same everywhere"
        self.next(self.a, self.b)

    @step
    def a(self):
        self.x = 1
        self.only_a = "from a"
        self.next(self.join)

    @step
    def b(self):
        self.x = 2
        self.only_b = "from b"
        self.next(self.join)

    @step
    def join(self, inputs):
        self.from_a = inputs.a.x
        self.from_b = inputs.b.x
        self.x = max(inp.x for inp in inputs)
        self.merge_artifacts(inputs)
        self.next(self.end)

    @step
    def end(self):
        print(f"x={self.x} a={self.from_a} b={self.from_b} {self.only_a} {self.only_b}")


if __name__ == "__main__":
    BranchFlow()
