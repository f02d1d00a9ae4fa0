from polyflow import FlowSpec, step


class LoopFlow(FlowSpec):
    @step
    def start(self):
        self.i = 0
        self.next(self.loop)

    @step
    def loop(self):
        self.i += 1
        self.state = "again" if self.i < 3 else "done"
        self.next({"again": self.loop, "done": self.end}, condition="state")

    @step
    def end(self):
        pass


if __name__ == "__main__":
    LoopFlow()
