"""Conformance vectors run through the Python SDK against a real daemon (see README.md).

Fast checks come first (each vector matches `schema.json` and the rules beyond it, generates a
flow that compiles, and the vocabulary is covered), then one test per vector that runs the
generated flow through its CLI and checks `expect` through the client API.

`jsonschema` is not a dependency: a small validator below implements the subset of JSON
Schema (2020-12) that `schema.json` uses, and refuses any keyword outside that subset, so the
two cannot drift apart silently. When `jsonschema` happens to be installed, it is used too.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import runner_python as runner

HERE = Path(__file__).resolve().parent
VECTOR_PATHS = sorted((HERE / "vectors").glob("*.json"))
SCHEMA: dict[str, Any] = json.loads((HERE / "schema.json").read_text(encoding="utf-8"))
RUN_TIMEOUT = 300.0
"""Seconds a flow run may take (the CLI starts the daemon on first use)."""
OBSERVE_TIMEOUT = 120.0
"""Seconds reading a run through the client may take."""


def _vector_param(path: Path) -> Any:
    return pytest.param(path, id=path.stem)


VECTORS = [_vector_param(p) for p in VECTOR_PATHS]


# --------------------------------------------------------------------------------------------
# A small JSON Schema validator (the subset schema.json uses)


class SchemaValidator:
    """Validates JSON values against a schema written in a subset of JSON Schema 2020-12.

    Supported keywords: `$ref` (local `#/$defs/...`), `type`, `enum`, `const`, `properties`,
    `required`, `additionalProperties`, `propertyNames`, `minProperties`, `maxProperties`,
    `items`, `minItems`, `uniqueItems`, `minLength`, `pattern`, `minimum`, `oneOf`, `anyOf`,
    plus the annotations `$schema`, `$id`, `$defs`, `title`, `description`. Any other keyword is
    an error, so the schema cannot use something this validator would silently skip.
    """

    ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "$comment"})
    KEYWORDS = frozenset(
        {
            "$ref", "type", "enum", "const", "properties", "required", "additionalProperties",
            "propertyNames", "minProperties", "maxProperties", "items", "minItems", "uniqueItems",
            "minLength", "pattern", "minimum", "oneOf", "anyOf",
        }
    )  # fmt: skip

    def __init__(self, root: Mapping[str, Any]) -> None:
        """Keeps the root schema, against which `$ref`s resolve."""
        self.root = root

    def errors(
        self, value: Any, schema: Mapping[str, Any] | None = None, path: str = "$"
    ) -> list[str]:
        """Every violation, as '<JSON path>: <what is wrong>'."""
        schema = self.root if schema is None else schema
        unknown = set(schema) - self.KEYWORDS - self.ANNOTATIONS
        if unknown:
            raise ValueError(f"schema at {path} uses unsupported keywords {sorted(unknown)}")
        out: list[str] = []
        if "$ref" in schema:
            out += self.errors(value, self._resolve(schema["$ref"]), path)
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(self._is_type(value, t) for t in types):
                return [
                    *out,
                    f"{path}: expected {' or '.join(types)}, got {json.dumps(value)[:80]}",
                ]
        if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
            out.append(f"{path}: {json.dumps(value)} is not one of {json.dumps(schema['enum'])}")
        if "const" in schema and not _same(value, schema["const"]):
            out.append(f"{path}: expected {json.dumps(schema['const'])}")
        if isinstance(value, str):
            out += self._string_errors(value, schema, path)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                out.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if isinstance(value, list):
            out += self._array_errors(value, schema, path)
        if isinstance(value, dict):
            out += self._object_errors(value, schema, path)
        if "oneOf" in schema:
            results = [self.errors(value, alt, path) for alt in schema["oneOf"]]
            matches = sum(1 for r in results if not r)
            if matches != 1:
                detail = "; ".join(r[0] for r in results if r)
                out.append(
                    f"{path}: matches {matches} of the oneOf alternatives, expected 1 ({detail})"
                )
        if "anyOf" in schema:
            results = [self.errors(value, alt, path) for alt in schema["anyOf"]]
            if all(results):
                out.append(f"{path}: matches none of the anyOf alternatives ({results[0][0]})")
        return out

    def _resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#/"):
            raise ValueError(f"only local references are supported, not {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return node  # type: ignore[no-any-return]

    @staticmethod
    def _is_type(value: Any, type_name: str) -> bool:
        if type_name == "object":
            return isinstance(value, dict)
        if type_name == "array":
            return isinstance(value, list)
        if type_name == "string":
            return isinstance(value, str)
        if type_name == "boolean":
            return isinstance(value, bool)
        if type_name == "null":
            return value is None
        if isinstance(value, bool):
            return False
        if type_name == "number":
            return isinstance(value, int | float)
        if type_name == "integer":
            return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        raise ValueError(f"unknown type {type_name!r}")

    def _string_errors(self, value: str, schema: Mapping[str, Any], path: str) -> list[str]:
        out: list[str] = []
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{path}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: {value!r} does not match {schema['pattern']}")
        return out

    def _array_errors(self, value: list[Any], schema: Mapping[str, Any], path: str) -> list[str]:
        out: list[str] = []
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(f"{path}: fewer than {schema['minItems']} items")
        if schema.get("uniqueItems"):
            for i, item in enumerate(value):
                if any(_same(item, other) for other in value[:i]):
                    out.append(f"{path}[{i}]: duplicate item {json.dumps(item)}")
        if "items" in schema:
            for i, item in enumerate(value):
                out += self.errors(item, schema["items"], f"{path}[{i}]")
        return out

    def _object_errors(
        self, value: dict[str, Any], schema: Mapping[str, Any], path: str
    ) -> list[str]:
        out: list[str] = []
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: missing required key {key!r}")
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            out.append(f"{path}: fewer than {schema['minProperties']} keys")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            out.append(f"{path}: more than {schema['maxProperties']} keys ({sorted(value)})")
        props: Mapping[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if "propertyNames" in schema:
                out += self.errors(key, schema["propertyNames"], f"{path} key {key!r}")
            if key in props:
                out += self.errors(item, props[key], f"{path}.{key}")
            elif extra is False:
                out.append(f"{path}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                out += self.errors(item, extra, f"{path}.{key}")
        return out


def _same(a: Any, b: Any) -> bool:
    """JSON equality where booleans are not numbers (as JSON Schema's enum/const/uniqueItems)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b) if isinstance(a, float) or isinstance(b, float) else a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


VALIDATOR = SchemaValidator(SCHEMA)


# --------------------------------------------------------------------------------------------
# Fast checks: no daemon


def test_there_are_enough_vectors() -> None:
    """The suite holds at least the 16 vectors the design asks for."""
    assert len(VECTOR_PATHS) >= 16, [p.name for p in VECTOR_PATHS]


@pytest.mark.parametrize("path", VECTORS)
def test_vector_matches_schema(path: Path) -> None:
    """The vector matches schema.json, is named after its file and passes the graph checks."""
    vector = runner.load_vector(path)
    errors = VALIDATOR.errors(vector)
    assert not errors, "\n".join(errors)
    assert vector["name"] == path.stem, "a vector's name is its file's stem"
    problems = runner.vector_problems(vector)
    assert not problems, "\n".join(problems)


def test_jsonschema_agrees_when_installed() -> None:
    """With `jsonschema` installed (it is not a dependency), it accepts the schema and vectors."""
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for path in VECTOR_PATHS:
        errors = [e.message for e in validator.iter_errors(runner.load_vector(path))]
        assert not errors, f"{path.name}: {errors}"


def _case(mutate: Callable[[dict[str, Any]], Any], fragment: str) -> Any:
    """A test case that breaks a vector with `mutate` and expects an error containing `fragment`."""
    return pytest.param(mutate, fragment, id=fragment)


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        _case(
            lambda v: v["steps"][0]["actions"].append({"explode": "x"}), "unexpected key 'explode'"
        ),
        _case(
            lambda v: v["steps"][0]["actions"].append({"input": "x", "index": "y"}),
            "more than 1 keys",
        ),
        _case(
            lambda v: v["steps"][0].update(next={"linear": "end", "branch": ["a", "b"]}), "oneOf"
        ),
        _case(lambda v: v["expect"].update(status="done"), "is not one of"),
        _case(lambda v: v["expect"]["task_counts"].update(start=-1), "below the minimum"),
        _case(lambda v: v["steps"][0].update(name="Start"), "does not match"),
        _case(lambda v: v.pop("run_args"), "missing required key 'run_args'"),
        _case(
            lambda v: v["parameters"].append({"name": "p", "type": "int", "default": 1}), "'help'"
        ),
    ],
)
def test_schema_validator_rejects(mutate: Any, fragment: str) -> None:
    """The validator catches typical mistakes (and so is not a rubber stamp)."""
    vector = runner.load_vector(HERE / "vectors" / "linear.json")
    mutate(vector)
    errors = VALIDATOR.errors(vector)
    assert any(fragment in e for e in errors), errors


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        _case(lambda v: v["steps"][1]["next"].update(linear="nowhere"), "unknown step 'nowhere'"),
        _case(
            lambda v: v["steps"][2].update(next={"linear": "middle"}),
            "the end step 'end' has a next",
        ),
        _case(lambda v: v["steps"][1].pop("next"), "has no next"),
        _case(
            lambda v: v["steps"][1]["actions"].append({"sum": {"to": "t", "attr": "a"}}),
            "join steps only",
        ),
        _case(lambda v: v["steps"][1].update(name="next"), "reserved"),
        _case(lambda v: v["expect"].update(error="Boom"), "only with status failed"),
        _case(lambda v: v["steps"][0].update(name="first"), "no start step"),
    ],
)
def test_vector_problems_rejects(mutate: Any, fragment: str) -> None:
    """The checks beyond the schema catch broken graphs."""
    vector = runner.load_vector(HERE / "vectors" / "linear.json")
    mutate(vector)
    problems = runner.vector_problems(vector)
    assert any(fragment in p for p in problems), problems


def test_vocabulary_is_covered() -> None:
    """Every action and transition of the vocabulary is used by at least one vector."""
    vectors = [runner.load_vector(p) for p in VECTOR_PATHS]
    actions = set(SCHEMA["$defs"]["action"]["properties"])
    used = set(runner.iter_actions(vectors))
    assert actions - used == set(), f"actions no vector uses: {sorted(actions - used)}"
    assert used <= actions
    transitions = {key for v in vectors for s in v["steps"] for key in s.get("next", {})}
    assert {"linear", "branch", "foreach", "switch"} <= transitions
    statuses = {v["expect"]["status"] for v in vectors}
    assert statuses == {"succeeded", "failed"}
    types = {p["type"] for v in vectors for p in v["parameters"]}
    assert types == set(runner.PARAMETER_TYPES)


@pytest.mark.parametrize("path", VECTORS)
def test_generated_flow_compiles(path: Path) -> None:
    """The generated Python flow is valid Python and defines the expected class."""
    vector = runner.load_vector(path)
    source = runner.generate_flow(vector)
    compile(source, f"{path.stem}_flow.py", "exec")
    class_name = runner.flow_class_name(vector["name"])
    assert f"\nclass {class_name}(FlowSpec):" in source
    assert source.rstrip().endswith(f"    {class_name}()")


def test_flow_class_name() -> None:
    """Vector names map to CamelCase class names ending in Flow."""
    assert runner.flow_class_name("linear") == "LinearFlow"
    assert runner.flow_class_name("nested_foreach_2") == "NestedForeach2Flow"


def test_values_equal_rules() -> None:
    """Numbers compare by value, booleans are not numbers, containers compare deeply."""
    assert runner.values_equal(3, 3.0)
    assert runner.values_equal(0.1 + 0.2, 0.3)
    assert not runner.values_equal(1, True)
    assert not runner.values_equal(False, 0)
    assert not runner.values_equal(None, 0)
    assert runner.values_equal({"a": [1, 2]}, {"a": [1, 2.0]})
    assert not runner.values_equal({"a": [1, 2]}, {"a": [2, 1]})
    assert not runner.values_equal({"a": 1}, {"a": 1, "b": 2})


def test_check_reports_precise_mismatches() -> None:
    """`check` names the step, task, artifact, expected and actual value of every mismatch."""
    vector = runner.load_vector(HERE / "vectors" / "foreach_sum_squares.json")

    def task(index: int | None, **artifacts: Any) -> dict[str, Any]:
        return {
            "id": str(index),
            "index": index,
            "successful": True,
            "artifacts": {k: {"value": v} for k, v in artifacts.items()},
            "stdout": "square computed\n",
        }

    squares = [task(i, x=i + 1, i=i, sq=(i + 1) ** 2, xs=[1, 2, 3, 4]) for i in range(4)]
    squares[2]["artifacts"]["sq"] = {"value": 10}
    observation = {
        "run": {"successful": True, "failure": []},
        "steps": {
            "start": {"tasks": [task(None)]},
            "square": {"tasks": squares},
            "join": {"tasks": [task(None, total=30, squares=[1, 4, 9, 16], seen=[1, 2, 3, 4])]},
            "end": {"tasks": [], "lookup_error": "KeyError: 'end'"},
        },
    }
    problems = runner.check(vector, observation, exit_code=0)
    assert "square[task 2, index 2]: artifact 'sq' is 10, expected 9" in problems
    assert "end: 0 task(s), expected 1 (lookup: KeyError: 'end')" in problems
    assert any(p.startswith("end: expect.artifacts needs tasks") for p in problems)
    assert len(problems) == 3, problems

    failed = {**observation, "run": {"successful": False, "failure": ["ValueError: nope"]}}
    problems = runner.check(vector, failed, exit_code=1)
    assert problems[0].startswith("run: successful is False, expected True")
    assert problems[1] == "CLI: exit code 1, expected 0"


# --------------------------------------------------------------------------------------------
# Running the vectors against a daemon


@dataclass
class Project:
    """A folder with its own Polyflow root, where flows run as a user would run them."""

    path: Path

    @property
    def root(self) -> Path:
        """The `.polyflow` root of this project (POLYFLOW_ROOT)."""
        return self.path / ".polyflow"

    @property
    def env(self) -> dict[str, str]:
        """The environment of every process the test starts: this root, no remote daemon."""
        env = dict(os.environ)
        env["POLYFLOW_ROOT"] = str(self.root)
        env.pop("POLYFLOW_CORE_ADDRESS", None)
        env["POLYFLOW_DAEMON_IDLE_TIMEOUT"] = "120"  # a safety net if teardown cannot stop it
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def python(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Runs `python <args>` in the project folder with the project's environment."""
        return subprocess.run(
            [sys.executable, *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def stop_daemon(self) -> None:
        """Stops the daemon of this root, if one runs: SIGTERM to its pid, then waits for it."""
        try:
            pid = int((self.root / "daemon.pid").read_text().strip())
        except (OSError, ValueError):
            return
        if not _is_polyflow_process(pid):
            return  # already gone (and the pid may have been reused)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child would still answer; the daemon is not our child, so this is exact enough.
    return True


def _is_polyflow_process(pid: int) -> bool:
    """Whether the pid is alive and looks like a Polyflow daemon (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _alive(pid)  # no /proc: trust the pid file
    return b"polyflow" in cmdline


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A fresh project folder and root, whose daemon is stopped at the end of the test."""
    proj = Project(tmp_path / "project")
    proj.path.mkdir()
    try:
        yield proj
    finally:
        proj.stop_daemon()


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.mark.slow
@pytest.mark.parametrize("path", VECTORS)
def test_vector_runs(path: Path, project: Project) -> None:
    """Generate the flow, run it through the CLI, read the run back and compare with `expect`."""
    vector = runner.load_vector(path)
    flow_file = project.path / f"{vector['name']}_flow.py"
    flow_file.write_text(runner.generate_flow(vector), encoding="utf-8")
    run_id_file = project.path / "run-id"

    args = [str(flow_file), "run", "--run-id-file", str(run_id_file), *vector["run_args"]]
    try:
        proc = project.python(*args, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{path.stem}: the run did not finish within {RUN_TIMEOUT:.0f} s: {exc}")
    cli_output = (
        f"--- CLI exit code {proc.returncode}\n--- stdout\n{_tail(proc.stdout)}\n"
        f"--- stderr\n{_tail(proc.stderr)}"
    )

    run_id = run_id_file.read_text().strip() if run_id_file.exists() else ""
    if not run_id:
        pytest.fail(f"{path.stem}: the CLI wrote no run id to --run-id-file\n{cli_output}")

    observation_file = project.path / "observation.json"
    try:
        obs = project.python(
            str(HERE / "runner_python.py"),
            *("observe", str(path), run_id, "--out", str(observation_file)),
            timeout=OBSERVE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{path.stem}: reading run {run_id} through the client timed out: {exc}\n{cli_output}"
        )
    if obs.returncode != 0:
        pytest.fail(
            f"{path.stem}: reading run {run_id} through the client failed\n"
            f"--- observe stderr\n{_tail(obs.stderr)}\n{cli_output}"
        )
    observation = json.loads(observation_file.read_text(encoding="utf-8"))

    problems = runner.check(vector, observation, proc.returncode)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        pytest.fail(
            f"{path.stem} (run {observation.get('pathspec')}): {len(problems)} mismatch(es)\n"
            f"{listing}\n{cli_output}"
        )
