"""A tiny stand-in for the Python task worker, for the core's integration tests.

The core's local executor runs ``<python> -m <module>`` where the module is
``$POLYFLOW_WORKER_MODULE`` (default ``polyflow._worker``); the tests set it to this module (with
this folder on ``PYTHONPATH``), so the scheduler is tested over real processes and real gRPC
without the SDK.

What each step does comes from ``$POLYFLOW_FAKE_PLAN``, a JSON object mapping step names to
behaviours (all optional)::

    {"sleep": 0.1,             # seconds before reporting
     "print": ["line", ...],   # stdout lines; "stderr": [...] likewise
     "splits": 5,              # FOREACH: number of splits (default 3)
     "exit": 3,                # exit with this code without reporting
     "sigkill": true,          # SIGKILL itself without reporting
     "fail": "message",        # report a failure
     "next": ["x"],            # report these next steps instead of the graph's
     "loop_until": 3}          # SWITCH: take the first case until this many visits, then
                               # the second (counted through the "count" artifact)

Every task prints one line ``FAKE <json>`` describing what it received (step, task, attempt,
input pathspecs and steps, foreach stack), stores a JSON artifact ``seen_<step>`` and reports
its inputs' artifacts plus its own, so tests can follow both the inputs and the artifacts.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import grpc
from polyflow.api.common.v1 import enums_pb2, graph_pb2
from polyflow.api.runtime.v1 import message_pb2, service_pb2_grpc
from polyflow.api.runtime.v1 import request_response_pb2 as rr_pb2
from polyflow_core.datastore.local import LocalBlobStore


def _json_artifact(store: LocalBlobStore, name: str, value: object) -> graph_pb2.ArtifactRef:
    data = json.dumps(value).encode()
    info = store.put_bytes(data)
    return graph_pb2.ArtifactRef(
        name=name, digest=info.digest, encoding="json", size_bytes=len(data), type_name="json"
    )


def main() -> int:
    spec = message_pb2.TaskSpec()
    with open(os.environ["POLYFLOW_TASK_SPEC"], "rb") as file:
        spec.ParseFromString(file.read())
    plan = json.loads(os.environ.get("POLYFLOW_FAKE_PLAN", "{}")).get(spec.step_name, {})
    store = LocalBlobStore(spec.store.root)
    described = {
        "pid": os.getpid(),
        "step": spec.step_name,
        "task": spec.task_id,
        "attempt": spec.attempt,
        "inputs": [item.pathspec for item in spec.inputs],
        "input_steps": [item.step for item in spec.inputs],
        "stack": [[f.step, f.index, f.num_splits, f.value_repr] for f in spec.foreach_stack],
        "params": sorted(a.name for item in spec.inputs for a in item.artifacts),
        "core_address": spec.core_address,
        "tags": list(spec.tags),
        "graph_steps": [s.name for s in spec.graph.steps],
    }
    print("FAKE " + json.dumps(described), flush=True)
    for line in plan.get("print", []):
        print(line, flush=True)
    for line in plan.get("stderr", []):
        print(line, file=sys.stderr, flush=True)
    time.sleep(float(plan.get("sleep", 0)))
    if plan.get("sigkill"):
        os.kill(os.getpid(), signal.SIGKILL)
    if "exit" in plan:
        return int(plan["exit"])

    # Artifacts: the inputs' (first input wins on a name clash), then this task's own.
    artifacts: dict[str, graph_pb2.ArtifactRef] = {}
    for item in spec.inputs:
        for ref in item.artifacts:
            artifacts.setdefault(ref.name, ref)
    artifacts[f"seen_{spec.step_name}"] = _json_artifact(store, f"seen_{spec.step_name}", described)

    step = next(s for s in spec.graph.steps if s.name == spec.step_name)
    transition = step.transition
    outcome = message_pb2.TaskOutcome(succeeded=True)
    kind = transition.kind
    if kind == enums_pb2.TRANSITION_KIND_FOREACH:
        splits = int(plan.get("splits", 3))
        outcome.foreach_num_splits = splits
        outcome.foreach_value_reprs.extend(f"item{i}" for i in range(splits))
        outcome.next_steps.extend(transition.targets)
    elif kind == enums_pb2.TRANSITION_KIND_SWITCH:
        count = 0
        if "count" in artifacts:
            count = json.loads(store.get_bytes(artifacts["count"].digest))
        count += 1
        artifacts["count"] = _json_artifact(store, "count", count)
        cases = list(transition.switch_cases.values())
        keys = sorted(transition.switch_cases)  # "again" < "done" in the tests' graphs
        chosen = (
            transition.switch_cases[keys[0]]
            if count < int(plan.get("loop_until", 1))
            else (transition.switch_cases[keys[-1]] if len(cases) > 1 else cases[0])
        )
        outcome.next_steps.append(chosen)
    else:
        outcome.next_steps.extend(transition.targets)
    if "next" in plan:
        del outcome.next_steps[:]
        outcome.next_steps.extend(plan["next"])
    if "fail" in plan:
        outcome.succeeded = False
        outcome.failure_message = str(plan["fail"])
        del outcome.next_steps[:]
    outcome.artifacts.extend(artifacts.values())
    outcome.metadata["fake_worker"] = "1"

    with grpc.insecure_channel(spec.core_address) as channel:
        stub = service_pb2_grpc.RuntimeServiceStub(channel)
        stub.CompleteTask(
            rr_pb2.CompleteTaskRequest(task=spec.task, attempt=spec.attempt, outcome=outcome),
            timeout=60,
        )
    return 0 if outcome.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
