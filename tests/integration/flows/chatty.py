"""A flow whose start step prints 400 numbered lines on stdout and on stderr."""

import sys

from polyflow import FlowSpec, step


class ChattyFlow(FlowSpec):
    @step
    def start(self):
        for number in range(400):
            print(f"stdout line {number:04d} " + "." * 40)
            print(f"stderr line {number:04d} " + "." * 40, file=sys.stderr)
        self.next(self.end)

    @step
    def end(self):
        print("the end")


if __name__ == "__main__":
    ChattyFlow()
