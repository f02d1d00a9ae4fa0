"""Records `current` in each task and stores values that recur (for deduplication checks)."""

from polyflow import FlowSpec, Parameter, current, step

FIELDS = (
    "flow_name",
    "run_id",
    "step_name",
    "task_id",
    "retry_count",
    "origin_run_id",
    "pathspec",
    "namespace",
    "username",
    "is_running_flow",
)


def snapshot():
    seen = {name: getattr(current, name) for name in FIELDS}
    seen["tags"] = sorted(current.tags)
    seen["parameter_names"] = sorted(current.parameter_names)
    seen["has_flow_name"] = "flow_name" in current
    seen["get_missing"] = current.get("no_such_field", "fallback")
    return seen


class ArtifactsFlow(FlowSpec):
    """Artifacts that recur, and what `current` says."""

    alpha = Parameter("alpha", default=2)
    SCALE = 10

    @step
    def start(self):
        self.start_current = snapshot()
        self.big = "x" * 200_000
        self.same_a = [1, 2, 3]
        self.same_b = [1, 2, 3]
        self.next(self.middle)

    @step
    def middle(self):
        self.middle_current = snapshot()
        self.big_length = len(self.big)
        self.scaled = self.alpha * self.SCALE
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ArtifactsFlow()
