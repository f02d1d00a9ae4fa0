"""linear10: ten steps in a line, each setting a small artifact."""

from metaflow import FlowSpec, step


class Linear10Flow(FlowSpec):
    @step
    def start(self):
        self.values = [0]
        self.next(self.s1)

    @step
    def s1(self):
        self.values = [*self.values, 1]
        self.next(self.s2)

    @step
    def s2(self):
        self.values = [*self.values, 2]
        self.next(self.s3)

    @step
    def s3(self):
        self.values = [*self.values, 3]
        self.next(self.s4)

    @step
    def s4(self):
        self.values = [*self.values, 4]
        self.next(self.s5)

    @step
    def s5(self):
        self.values = [*self.values, 5]
        self.next(self.s6)

    @step
    def s6(self):
        self.values = [*self.values, 6]
        self.next(self.s7)

    @step
    def s7(self):
        self.values = [*self.values, 7]
        self.next(self.s8)

    @step
    def s8(self):
        self.values = [*self.values, 8]
        self.next(self.end)

    @step
    def end(self):
        self.values = [*self.values, 9]
        assert self.values == list(range(10)), self.values


if __name__ == "__main__":
    Linear10Flow()
