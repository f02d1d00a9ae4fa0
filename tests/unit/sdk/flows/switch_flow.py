from polyflow import FlowSpec, step


class SwitchFlow(FlowSpec):
    @step
    def start(self):
        self.mode = "fast"
        self.next(
            {"fast": self.quick, "slow": self.careful, 3: self.careful},
            condition="mode",
        )

    @step
    def quick(self):
        self.next(self.end)

    @step
    def careful(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SwitchFlow()
