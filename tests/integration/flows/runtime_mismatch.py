"""The static graph says start -> a, but at run time start calls self.next(self.b)."""

from polyflow import FlowSpec, step


class RuntimeMismatchFlow(FlowSpec):
    @step
    def start(self):
        self.flag = True
        if self.flag:
            self.next(self.b)
            return
        self.next(self.a)

    @step
    def a(self):
        self.next(self.b)

    @step
    def b(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RuntimeMismatchFlow()
