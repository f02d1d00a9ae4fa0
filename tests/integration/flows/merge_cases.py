"""merge_artifacts cases, chosen by the 'mode' parameter.

- conflict: x differs across branches and is not set: UnhandledInMergeArtifactsError;
- exclude: x is excluded, the rest merges;
- include: only y is merged;
- missing: include names an artifact no input has: MissingInMergeArtifactsError.
"""

from polyflow import FlowSpec, Parameter, step


class MergeCasesFlow(FlowSpec):
    mode = Parameter("mode", default="exclude")

    @step
    def start(self):
        self.next(self.a, self.b)

    @step
    def a(self):
        self.x = "a"
        self.y = "same"
        self.z = "z"
        self.next(self.join)

    @step
    def b(self):
        self.x = "b"
        self.y = "same"
        self.z = "z"
        self.next(self.join)

    @step
    def join(self, inputs):
        if self.mode == "conflict":
            self.merge_artifacts(inputs)
        elif self.mode == "exclude":
            self.merge_artifacts(inputs, exclude=["x"])
        elif self.mode == "include":
            self.merge_artifacts(inputs, include=["y"])
        else:
            self.merge_artifacts(inputs, include=["y", "nowhere"])
        self.next(self.end)

    @step
    def end(self):
        self.merged = sorted(k for k in ("x", "y", "z") if hasattr(self, k))


if __name__ == "__main__":
    MergeCasesFlow()
