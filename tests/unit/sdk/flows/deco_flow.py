"""A flow for the built-in decorators' worker-side hooks (steps run one by one)."""

import time

from polyflow import FlowSpec, catch, retry, step, timeout


def fail(message):
    raise ValueError(message)


class DecoFlow(FlowSpec):
    @catch(var="error")
    @retry(times=1)
    @step
    def start(self):
        self.before = 1
        fail("nope")
        self.next(self.a, self.b)

    @catch(var="error", print_exception=False)
    @step
    def a(self):
        self.a_value = 1
        self.next(self.join)

    @catch(print_exception=False)
    @step
    def b(self):
        fail("quietly")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.sleepy)

    @timeout(seconds=0.3)
    @step
    def sleepy(self):
        time.sleep(5)
        self.next(self.quick)

    @timeout(minutes=1)
    @step
    def quick(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DecoFlow()
