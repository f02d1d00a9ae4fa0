"""A linear flow with parameters and constants."""

from polyflow import FlowSpec, IncludeFile, JSONType, Parameter, step


class LinearFlow(FlowSpec):
    """Three steps in a row."""

    ALPHA = 0.5
    NAMES = ("x", "y")

    alpha = Parameter("alpha", help="Learning rate", default=0.01)
    count = Parameter("count", default=3)
    config = Parameter("config", type=JSONType, default='{"a": 1}')
    notes = IncludeFile("notes", is_text=True, help="A notes file")

    @property
    def doubled(self) -> float:
        return self.alpha * 2

    def helper(self) -> int:
        return 1

    @step
    def start(self):
        """The first step."""
        self.x = 1
        self.next(self.middle)

    @step
    def middle(self):
        self.x += 1
        self.next(self.end)

    @step
    def end(self):
        """The last step."""
        pass


if __name__ == "__main__":
    LinearFlow()
