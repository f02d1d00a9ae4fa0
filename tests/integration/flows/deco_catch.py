"""@catch: a failing branching step whose flow goes on, with @retry before the catch."""

from polyflow import FlowSpec, catch, current, retry, step


def fail(message):
    raise ValueError(message)


class CatchFlow(FlowSpec):
    @catch(var="start_error")
    @retry(times=1, minutes_between_retries=0)
    @step
    def start(self):
        self.tries = current.retry_count + 1
        fail(f"boom on attempt {current.retry_count}")
        self.next(self.a, self.b)

    @catch(var="a_error", print_exception=False)
    @step
    def a(self):
        self.a_value = 1
        self.next(self.join)

    @step
    def b(self):
        self.b_value = 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.merge_artifacts(inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CatchFlow()
