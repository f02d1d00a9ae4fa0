"""A flow ported from Metaflow that catches Metaflow's errors by their Metaflow names (its
import lines changed from ``metaflow`` to ``polyflow``, nothing else)."""

from polyflow import FlowSpec, step
from polyflow.exception import (
    MetaflowException,
    MetaflowNotFound,
    MissingInMergeArtifactsException,
    UnhandledInMergeArtifactsException,
)


class PortedExceptionsFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.a, self.b)

    @step
    def a(self):
        self.x = "a"
        self.y = "same"
        self.next(self.join)

    @step
    def b(self):
        self.x = "b"
        self.y = "same"
        self.next(self.join)

    @step
    def join(self, inputs):
        caught = []
        try:
            self.merge_artifacts(inputs)
        except UnhandledInMergeArtifactsException as error:
            caught.append(("unhandled", isinstance(error, MetaflowException)))
        try:
            self.merge_artifacts(inputs, include=["nowhere"])
        except MissingInMergeArtifactsException as error:
            caught.append(("missing", isinstance(error, MetaflowException)))
        self.merge_artifacts(inputs, exclude=["x"])
        self.caught = caught
        self.next(self.end)

    @step
    def end(self):
        from polyflow import Run

        try:
            Run(f"{self.__class__.__name__}/no-such-run")
        except MetaflowNotFound:
            self.client_caught = "MetaflowNotFound"


if __name__ == "__main__":
    PortedExceptionsFlow()
