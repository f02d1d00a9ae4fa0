"""A flow of a single step, which is both start and end."""

from polyflow import FlowSpec, step


class OneStepFlow(FlowSpec):
    @step
    def only(self):
        self.answer = 42
        print("the only step")


if __name__ == "__main__":
    OneStepFlow()
