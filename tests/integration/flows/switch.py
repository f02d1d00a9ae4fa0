"""A conditional switch: the 'route' parameter chooses the branch."""

from polyflow import FlowSpec, Parameter, step


class SwitchFlow(FlowSpec):
    route = Parameter("route", default="left", help="left or right")

    @step
    def start(self):
        self.choice = self.route
        self.next({"left": self.left, "right": self.right}, condition="choice")

    @step
    def left(self):
        self.went = "left"
        self.next(self.end)

    @step
    def right(self):
        self.went = "right"
        self.next(self.end)

    @step
    def end(self):
        print(f"went {self.went}")


if __name__ == "__main__":
    SwitchFlow()
