"""A flow inheriting steps, a parameter and a constant from a base class in another module."""

from base_flows import BaseFlow
from polyflow import step


class InheritFlow(BaseFlow):
    @step
    def compute(self):
        self.result = sum(self.values) * self.scale
        self.constant_seen = self.BASE_CONSTANT
        self.next(self.end)


if __name__ == "__main__":
    InheritFlow()
