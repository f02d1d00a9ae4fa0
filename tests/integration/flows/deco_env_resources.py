"""@environment and @resources."""

import os

from polyflow import FlowSpec, environment, resources, step


class EnvResourcesFlow(FlowSpec):
    @resources(cpu=2, memory=8192, gpu=1)
    @environment(vars={"PF_DECO_GREETING": "hello", "PF_DECO_NUMBER": 3})
    @step
    def start(self):
        self.greeting = os.environ.get("PF_DECO_GREETING")
        self.number = os.environ.get("PF_DECO_NUMBER")
        self.next(self.end)

    @step
    def end(self):
        self.end_greeting = os.environ.get("PF_DECO_GREETING")


if __name__ == "__main__":
    EnvResourcesFlow()
