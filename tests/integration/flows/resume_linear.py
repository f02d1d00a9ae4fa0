"""Five linear steps for resume: each stores fresh random bytes (so a clone is seen to reuse
them), `four` and `end` record current.origin_run_id; see _resume_control for failures."""

import os

from _resume_control import checkpoint
from polyflow import FlowSpec, Parameter, current, step


class ResumeLinearFlow(FlowSpec):
    alpha = Parameter("alpha", default=1, help="A number the steps record")

    @step
    def start(self):
        self.payload_start = os.urandom(4096)
        self.alpha_in_start = self.alpha
        checkpoint("start")
        self.next(self.two)

    @step
    def two(self):
        self.payload_two = os.urandom(4096)
        print(f"two ran in run {current.run_id}")
        checkpoint("two")
        self.next(self.three)

    @step
    def three(self):
        self.payload_three = os.urandom(4096)
        checkpoint("three")
        self.next(self.four)

    @step
    def four(self):
        checkpoint("four")
        self.payload_four = os.urandom(4096)
        self.alpha_in_four = self.alpha
        self.origin_in_four = current.origin_run_id
        print(f"four sees origin run {current.origin_run_id}")
        self.next(self.end)

    @step
    def end(self):
        checkpoint("end")
        self.origin_in_end = current.origin_run_id


if __name__ == "__main__":
    ResumeLinearFlow()
