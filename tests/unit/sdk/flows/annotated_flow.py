from polyflow import FlowSpec, step


class AnnotatedFlow(FlowSpec):
    @step(start=True)
    def begin(self):
        self.next(self.finish)

    @step(end=True)
    def finish(self):
        pass


class OneStepFlow(FlowSpec):
    """Only one step."""

    @step
    def only(self):
        self.done = True


if __name__ == "__main__":
    AnnotatedFlow()
