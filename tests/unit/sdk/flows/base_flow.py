from polyflow import FlowSpec, Parameter, step


class BaseFlow(FlowSpec):
    RATE = 2
    size = Parameter("size", default=10)

    @step
    def start(self):
        self.next(self.work)

    @step
    def work(self):
        self.next(self.end)

    @step
    def end(self):
        pass
