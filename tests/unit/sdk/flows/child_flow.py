from base_flow import BaseFlow
from polyflow import Parameter, step


class ChildFlow(BaseFlow):
    """Overrides one step of its base."""

    label = Parameter("label", default="x")

    @step
    def work(self):
        self.extra = self.RATE * self.size
        self.next(self.end)


if __name__ == "__main__":
    ChildFlow()
