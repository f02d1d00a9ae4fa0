"""The Python runner of the conformance vectors (the spec is README.md in this folder).

It has three jobs:

- **generate**: turn a vector into a readable Python flow file (`generate_flow`);
- **observe**: read a finished run through the Python client API and write what the daemon
  holds as JSON (`observe`). The test runs it in a subprocess with `POLYFLOW_ROOT` set, so that
  client state (channels, namespace) never leaks from one test to the next;
- **check**: compare an observation with the vector's `expect` and list every mismatch
  (`check`). It is pure: no daemon, no SDK import.

`vector_problems` holds the checks a JSON Schema cannot state (graph consistency, typing).

Command line, for debugging a vector by hand::

    python runner_python.py generate vectors/linear.json [-o flow.py]
    python runner_python.py observe vectors/linear.json RUN_ID --out observation.json
"""

from __future__ import annotations

import argparse
import builtins
import json
import keyword
import math
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

Json = Any
"""A value as `json.load` returns it (None, bool, int, float, str, list, dict)."""

Vector = Mapping[str, Any]
"""A parsed conformance vector."""

Observation = dict[str, Any]
"""What `observe` read from the daemon (its layout is documented in `observe`)."""

HERE = Path(__file__).resolve().parent

RESERVED_NAMES = frozenset(
    {"name", "next", "input", "index", "cmd", "foreach_stack", "merge_artifacts"}
)
"""Names a step or artifact may not take: Metaflow's reserved step names and FlowSpec members."""

R_RESERVED_WORDS = frozenset(
    {"if", "else", "repeat", "while", "function", "for", "in", "next", "break", "inf", "nan", "na"}
)
"""R's reserved words (lowercased), so that every vector also maps to an R flow."""

JOIN_ONLY_ACTIONS = frozenset({"sum", "collect", "from_branch", "merge_artifacts"})
"""Actions that read the join's `inputs`."""

COMPARE_OPS = frozenset({"<", "<=", "==", "!=", ">=", ">"})

PARAMETER_TYPES: Mapping[str, str] = {
    "int": "int",
    "float": "float",
    "str": "str",
    "bool": "bool",
    "json": "JSONType",
}
"""Vector parameter type -> the Python expression passed as `Parameter(type=...)`."""


# --------------------------------------------------------------------------------------------
# Vectors


def load_vector(path: Path) -> dict[str, Any]:
    """Reads a vector file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a vector is a JSON object")
    return data


def flow_class_name(vector_name: str) -> str:
    """`nested_foreach_2` -> `NestedForeach2Flow`."""
    return "".join(part[:1].upper() + part[1:] for part in vector_name.split("_") if part) + "Flow"


def start_step(vector: Vector) -> str:
    """The start step: the one annotated `start`, else the one named `start`, else a lone step."""
    return _terminal_step(vector, "start")


def end_step(vector: Vector) -> str:
    """The end step: the one annotated `end`, else the one named `end`, else a lone step."""
    return _terminal_step(vector, "end")


def _terminal_step(vector: Vector, role: str) -> str:
    steps = vector["steps"]
    marked = [s["name"] for s in steps if s.get(role)]
    if len(marked) == 1:
        return str(marked[0])
    if marked:
        raise ValueError(f"more than one step is marked {role}: {marked}")
    named = [s["name"] for s in steps if s["name"] == role]
    if named:
        return role
    if len(steps) == 1:
        return str(steps[0]["name"])
    raise ValueError(f"no {role} step")


def successors(step: Mapping[str, Any]) -> list[str]:
    """The steps a step's `next` can lead to, in the order written."""
    nxt = step.get("next")
    if nxt is None:
        return []
    if "linear" in nxt:
        return [nxt["linear"]]
    if "branch" in nxt:
        return list(nxt["branch"])
    if "foreach" in nxt:
        return [nxt["foreach"]]
    return list(nxt["switch"].values())


def action_kind(action: Mapping[str, Any]) -> str:
    """The name of a one-key action object."""
    (kind,) = action.keys()
    return str(kind)


def _check_name(problems: list[str], what: str, name: str) -> None:
    if keyword.iskeyword(name) or name in RESERVED_NAMES or name.lower() in R_RESERVED_WORDS:
        problems.append(f"{what} {name!r} is a reserved word")


def _value_has_type(value: Json, type_name: str) -> bool:
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name == "str":
        return isinstance(value, str)
    if type_name == "bool":
        return isinstance(value, bool)
    return True  # json: any document


def vector_problems(vector: Vector) -> list[str]:
    """Checks beyond the schema (README, "Checks beyond the schema"); returns the problems found.

    The vector must already match `schema.json`.
    """
    problems: list[str] = []
    steps = vector["steps"]
    by_name = {s["name"]: s for s in steps}
    if len(by_name) != len(steps):
        problems.append("step names are not unique")
    for s in steps:
        _check_name(problems, "step", s["name"])

    try:
        start, end = start_step(vector), end_step(vector)
    except ValueError as exc:
        return [*problems, str(exc)]
    for role in ("start", "end"):
        marked = [s["name"] for s in steps if s.get(role)]
        if marked and role in by_name and marked != [role]:
            problems.append(f"step {marked[0]!r} is marked {role} but a step is named {role!r}")

    # Transitions.
    for s in steps:
        name = s["name"]
        if name == end and "next" in s:
            problems.append(f"the end step {name!r} has a next")
        if name != end and "next" not in s:
            problems.append(f"step {name!r} has no next (only the end step may lack one)")
        for target in successors(s):
            if target not in by_name:
                problems.append(f"step {name!r} goes to unknown step {target!r}")
            elif target == start:
                problems.append(f"step {name!r} goes back to the start step")
        nxt = s.get("next") or {}
        if "switch" in nxt:
            for target in nxt["switch"].values():
                if by_name.get(target, {}).get("join"):
                    problems.append(f"switch in {name!r} goes straight into join {target!r}")
        if "foreach" in nxt and by_name.get(nxt["foreach"], {}).get("join"):
            problems.append(f"foreach in {name!r} goes straight into join {nxt['foreach']!r}")

    # Reachability from start (only edges to existing steps).
    seen = {start}
    todo = [start]
    while todo:
        for target in successors(by_name[todo.pop()]):
            if target in by_name and target not in seen:
                seen.add(target)
                todo.append(target)
    for s in steps:
        if s["name"] not in seen:
            problems.append(f"step {s['name']!r} is not reachable from {start!r}")

    # Parameters and constants.
    names: set[str] = set()
    for p in vector["parameters"]:
        _check_name(problems, "parameter", p["name"])
        if p["name"] in names:
            problems.append(f"parameter {p['name']!r} is declared twice")
        names.add(p["name"])
        if not _value_has_type(p["default"], p["type"]):
            problems.append(
                f"parameter {p['name']!r}: default {p['default']!r} is not a {p['type']}"
            )
    for c in vector["constants"]:
        _check_name(problems, "constant", c)
        if c in names:
            problems.append(f"constant {c!r} has a parameter's name")
        names.add(c)
    step_names = set(by_name)
    if names & step_names:
        both = sorted(names & step_names)
        problems.append(f"names used both for steps and for parameters/constants: {both}")
    params = {p["name"] for p in vector["parameters"]}

    # Actions.
    for s in steps:
        for action in s["actions"]:
            kind = action_kind(action)
            body = action[kind]
            if kind in JOIN_ONLY_ACTIONS and not s.get("join"):
                problems.append(f"step {s['name']!r}: {kind} is allowed in join steps only")
            if kind == "param" and body["name"] not in params:
                problems.append(f"step {s['name']!r}: param {body['name']!r} is not a parameter")
            if kind == "merge_artifacts" and "include" in body and "exclude" in body:
                problems.append(f"step {s['name']!r}: merge_artifacts takes include or exclude")
            targets = _assigned_names(kind, body)
            for t in targets:
                _check_name(problems, "artifact", t)
                if t in names:
                    problems.append(
                        f"step {s['name']!r}: {kind} assigns to parameter/constant {t!r}"
                    )
                if t in step_names:
                    problems.append(f"step {s['name']!r}: artifact {t!r} has a step's name")

    # Expectations.
    expect = vector["expect"]
    if "error" in expect and expect["status"] != "failed":
        problems.append("expect.error is allowed only with status failed")
    for section in ("artifacts", "absent", "tasks", "task_counts", "stdout"):
        for step_name in expect.get(section, {}):
            if step_name not in by_name:
                problems.append(f"expect.{section} names unknown step {step_name!r}")
    return problems


def _assigned_names(kind: str, body: Any) -> list[str]:
    """The artifact names an action assigns to."""
    if kind == "set":
        return list(body)
    if kind in {"input", "index", "foreach_stack", "increment"}:
        return [body]
    if isinstance(body, dict) and "to" in body:
        return [body["to"]]
    return []


def iter_actions(vectors: Iterable[Vector]) -> Iterable[str]:
    """Every action kind used by the vectors (with repeats)."""
    for vector in vectors:
        for s in vector["steps"]:
            for action in s["actions"]:
                yield action_kind(action)


# --------------------------------------------------------------------------------------------
# Generating a Python flow


def _operand(value: Json) -> str:
    """An operand: a number literal, or a string naming an artifact."""
    if isinstance(value, str):
        return f"self.{value}"
    return repr(value)


def _literal(value: Json) -> str:
    """A JSON value as a Python literal, strings in double quotes."""
    if isinstance(value, str):
        if '"' in value and "'" not in value:
            return repr(value)  # single quotes read better than escaped double quotes
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid Python literal
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)  # None, True, False, int, float


def _docstring_lines(text: str, indent: str) -> list[str]:
    """A triple-quoted docstring holding the text, wrapped to 96 columns."""
    safe = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = textwrap.wrap(safe, width=93 - len(indent)) or [""]
    if len(lines) == 1:
        closing = ' """' if lines[0].endswith('"') else '"""'
        return [f'{indent}"""{lines[0]}{closing}']
    return [f'{indent}"""{lines[0]}', *(f"{indent}{line}" for line in lines[1:]), f'{indent}"""']


def _render_action(action: Mapping[str, Any]) -> list[str]:
    """The Python statements of one action."""
    kind = action_kind(action)
    body = action[kind]
    if kind == "set":
        return [f"self.{name} = {_literal(value)}" for name, value in body.items()]
    if kind == "copy":
        return [f"self.{body['to']} = self.{body['from']}"]
    if kind == "param":
        return [f"self.{body['to']} = self.{body['name']}"]
    if kind == "input":
        return [f"self.{body} = self.input"]
    if kind == "index":
        return [f"self.{body} = self.index"]
    if kind == "foreach_stack":
        return [f"self.{body} = [[frame[0], frame[1]] for frame in self.foreach_stack()]"]
    if kind in {"add", "multiply"}:
        op = " + " if kind == "add" else " * "
        return [f"self.{body['to']} = {op.join(_operand(a) for a in body['args'])}"]
    if kind == "square":
        arg = _operand(body["arg"])
        return [f"self.{body['to']} = {arg} * {arg}"]
    if kind == "increment":
        return [f"self.{body} += 1"]
    if kind == "compare":
        if body["op"] not in COMPARE_OPS:
            raise ValueError(f"unknown comparison {body['op']!r}")
        test = f"{_operand(body['left'])} {body['op']} {_operand(body['right'])}"
        then, other = _literal(body["then"]), _literal(body["else"])
        return [f"self.{body['to']} = {then} if {test} else {other}"]
    if kind == "sum":
        return [f"self.{body['to']} = sum(inp.{body['attr']} for inp in inputs)"]
    if kind == "collect":
        return [f"self.{body['to']} = [inp.{body['attr']} for inp in inputs]"]
    if kind == "from_branch":
        return [f"self.{body['to']} = inputs.{body['branch']}.{body['attr']}"]
    if kind == "merge_artifacts":
        extra = "".join(
            f", {key}={_literal(body[key])}" for key in ("include", "exclude") if key in body
        )
        return [f"self.merge_artifacts(inputs{extra})"]
    if kind == "raise":
        return [f"raise {body['type']}({_literal(body['message'])})"]
    if kind == "print":
        return [f"print({_literal(body)})"]
    raise ValueError(f"unknown action {kind!r}")


def _render_next(nxt: Mapping[str, Any]) -> str:
    """The `self.next(...)` call of a transition."""
    if "linear" in nxt:
        return f"self.next(self.{nxt['linear']})"
    if "branch" in nxt:
        return "self.next(" + ", ".join(f"self.{t}" for t in nxt["branch"]) + ")"
    if "foreach" in nxt:
        return f"self.next(self.{nxt['foreach']}, foreach={_literal(nxt['var'])})"
    if "switch" in nxt:
        cases = ", ".join(
            f"{_literal(case)}: self.{target}" for case, target in nxt["switch"].items()
        )
        return f"self.next({{{cases}}}, condition={_literal(nxt['condition'])})"
    raise ValueError(f"unknown transition {dict(nxt)!r}")


def _render_parameter(param: Mapping[str, Any]) -> str:
    """A `Parameter(...)` class attribute. A json default is passed as its JSON text."""
    type_expr = PARAMETER_TYPES[param["type"]]
    default = param["default"]
    default_expr = _literal(json.dumps(default) if param["type"] == "json" else default)
    return (
        f"{param['name']} = Parameter({_literal(param['name'])}, type={type_expr}, "
        f"default={default_expr}, help={_literal(param['help'])})"
    )


def _render_step(step_spec: Mapping[str, Any]) -> list[str]:
    """A step method, indented for the class body."""
    flags = [f"{role}=True" for role in ("start", "end") if step_spec.get(role)]
    decorator = f"@step({', '.join(flags)})" if flags else "@step"
    args = "self, inputs" if step_spec.get("join") else "self"
    body: list[str] = []
    for action in step_spec["actions"]:
        body.extend(_render_action(action))
    if "next" in step_spec:
        body.append(_render_next(step_spec["next"]))
    if not body:
        body.append("pass")
    return [
        f"    {decorator}",
        f"    def {step_spec['name']}({args}):",
        *(f"        {b}" for b in body),
    ]


def _custom_error_types(vector: Vector) -> list[str]:
    """Error types named by `raise` actions that are not Python built-in exceptions."""
    found: list[str] = []
    for s in vector["steps"]:
        for action in s["actions"]:
            if action_kind(action) != "raise":
                continue
            name = action["raise"]["type"]
            builtin = getattr(builtins, name, None)
            is_builtin = isinstance(builtin, type) and issubclass(builtin, BaseException)
            if not is_builtin and name not in found:
                found.append(name)
    return found


def generate_flow(vector: Vector) -> str:
    """The source of a Python flow file for the vector."""
    problems = vector_problems(vector)
    if problems:
        raise ValueError(f"vector {vector.get('name')!r} is invalid: " + "; ".join(problems))
    class_name = flow_class_name(vector["name"])
    imports = ["FlowSpec", "step"]
    if vector["parameters"]:
        imports.append("Parameter")
    if any(p["type"] == "json" for p in vector["parameters"]):
        imports.append("JSONType")

    out: list[str] = [
        *_docstring_lines(
            f"Flow of conformance vector {vector['name']}: generated, do not edit.",
            "",
        ),
        "",
        f"from polyflow import {', '.join(sorted(imports, key=str.lower))}",
        "",
    ]
    for error_type in _custom_error_types(vector):
        out += [
            "",
            f"class {error_type}(Exception):",
            '    """An error type the vector names."""',
            "",
        ]
    out += [
        "",
        f"class {class_name}(FlowSpec):",
        *_docstring_lines(vector["description"], "    "),
        "",
    ]
    for name, value in vector["constants"].items():
        out.append(f"    {name} = {_literal(value)}")
    if vector["constants"]:
        out.append("")
    for param in vector["parameters"]:
        out.append(f"    {_render_parameter(param)}")
    if vector["parameters"]:
        out.append("")
    for i, step_spec in enumerate(vector["steps"]):
        if i:
            out.append("")
        out.extend(_render_step(step_spec))
    out += ["", "", 'if __name__ == "__main__":', f"    {class_name}()", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Observing a run through the client API


def wanted_artifacts(vector: Vector) -> dict[str, list[str]]:
    """step -> the artifact names the expectations read on that step's tasks."""
    expect = vector["expect"]
    wanted: dict[str, list[str]] = {}

    def add(step_name: str, names: Iterable[str]) -> None:
        bucket = wanted.setdefault(step_name, [])
        bucket.extend(n for n in names if n not in bucket)

    for step_name, values in expect.get("artifacts", {}).items():
        add(step_name, values)
    for step_name, names in expect.get("absent", {}).items():
        add(step_name, names)
    for step_name, entries in expect.get("tasks", {}).items():
        for entry in entries:
            add(step_name, entry.get("where", {}))
            add(step_name, entry.get("artifacts", {}))
            add(step_name, entry.get("absent", []))
    return wanted


def stdout_steps(vector: Vector) -> set[str]:
    """Steps whose tasks' stdout the expectations read."""
    expect = vector["expect"]
    steps = set(expect.get("stdout", {}))
    for step_name, entries in expect.get("tasks", {}).items():
        if any("stdout" in entry for entry in entries):
            steps.add(step_name)
    return steps


def to_json(value: Any) -> Json:
    """A loaded artifact as JSON: tuples become lists; anything else non-JSON is described."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: to_json(v) for k, v in value.items()}
    return {
        "__not_json__": f"{type(value).__module__}.{type(value).__qualname__}",
        "repr": repr(value),
    }


def _short_type(type_name: str) -> str:
    """`builtins.ValueError` -> `ValueError`; `pkg::Error` -> `Error`."""
    return type_name.replace("::", ".").rsplit(".", 1)[-1]


def describe_error(value: Any) -> list[str]:
    """Texts of the form '<Type>: <message>' (or free text) for an error as a client returns it.

    The Python client may return an exception instance, a record with `type` and `message`
    (as the wire's `ExceptionInfo`) or a string; every form is accepted.
    """
    if value is None or value == "":
        return []
    if isinstance(value, BaseException):
        return [f"{type(value).__name__}: {value}"]
    if isinstance(value, str):
        return [value]
    type_name = getattr(value, "type", None)
    message = getattr(value, "message", None)
    if isinstance(type_name, str) and type_name:
        return [f"{_short_type(type_name)}: {message or ''}", str(value)]
    return [str(value)]


def _failure_texts(obj: Any) -> list[str]:
    """Everything a client object says about why it failed."""
    texts: list[str] = []
    for attr in ("exception", "failure_message"):
        try:
            value = getattr(obj, attr)
        except Exception:
            continue
        texts.extend(describe_error(value))
    return texts


def _observe_task(task: Any, names: Sequence[str], want_stdout: bool) -> dict[str, Any]:
    """One task: id, index, success, the wanted artifacts, and stdout or failure if wanted."""
    record: dict[str, Any] = {"id": str(getattr(task, "id", "?"))}
    try:
        index = task.index
        record["index"] = index if isinstance(index, int) else None
    except Exception as exc:
        record["index"] = None
        record["index_error"] = f"{type(exc).__name__}: {exc}"
    try:
        record["successful"] = bool(task.successful)
    except Exception as exc:
        record["successful"] = None
        record["successful_error"] = f"{type(exc).__name__}: {exc}"
    artifacts: dict[str, Any] = {}
    if names:
        try:
            data = task.data
        except Exception as exc:
            data = None
            record["data_error"] = f"{type(exc).__name__}: {exc}"
        for name in names:
            try:
                artifacts[name] = {"value": to_json(getattr(data, name))}
            except Exception as exc:
                artifacts[name] = {"missing": f"{type(exc).__name__}: {exc}"}
    record["artifacts"] = artifacts
    if want_stdout:
        try:
            record["stdout"] = str(task.stdout or "")
        except Exception as exc:
            record["stdout"] = None
            record["stdout_error"] = f"{type(exc).__name__}: {exc}"
    if record["successful"] is not True:
        record["failure"] = _failure_texts(task)
        try:
            record["stderr"] = str(task.stderr or "")[-4000:]
        except Exception:
            record["stderr"] = ""
    return record


def observe(vector: Vector, run_id: str) -> Observation:
    """Reads the run through the Python client API.

    Returns ``{"pathspec", "run": {"successful", "finished", "failure": [str]},
    "steps": {step: {"tasks": [task], "lookup_error"?: str}}}`` where a task is
    ``{"id", "index", "successful", "artifacts": {name: {"value": v} | {"missing": why}},
    "stdout"?, "failure"?, "stderr"?}``. Every step of the vector is listed; a step that never
    ran has no tasks.
    """
    from polyflow import Run, namespace  # imported here: generate/check need no SDK

    namespace(None)
    pathspec = f"{flow_class_name(vector['name'])}/{run_id}"
    run = Run(pathspec)
    observation: Observation = {"pathspec": pathspec, "run": {}, "steps": {}}
    for attr in ("successful", "finished"):
        try:
            observation["run"][attr] = bool(getattr(run, attr))
        except Exception as exc:
            observation["run"][attr] = None
            observation["run"][f"{attr}_error"] = f"{type(exc).__name__}: {exc}"
    observation["run"]["failure"] = _failure_texts(run)

    wanted = wanted_artifacts(vector)
    with_stdout = stdout_steps(vector)
    for step_spec in vector["steps"]:
        name = step_spec["name"]
        entry: dict[str, Any] = {"tasks": []}
        observation["steps"][name] = entry
        try:
            step_obj = run[name]
        except Exception as exc:  # a step that never ran is not in the run
            entry["lookup_error"] = f"{type(exc).__name__}: {exc}"
            continue
        for task in step_obj.tasks():
            entry["tasks"].append(_observe_task(task, wanted.get(name, []), name in with_stdout))
    return observation


# --------------------------------------------------------------------------------------------
# Checking an observation against `expect`


def values_equal(expected: Json, actual: Json) -> bool:
    """JSON equality under the README's rules.

    Booleans are not numbers; integers and floats compare by value (floats with a relative
    tolerance of 1e-9); lists compare in order; objects by their key sets and values.
    """
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, int | float):
        if not isinstance(actual, int | float):
            return False
        if isinstance(expected, int) and isinstance(actual, int):
            return expected == actual
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(expected, str):
        return isinstance(actual, str) and expected == actual
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(values_equal(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(expected) == set(actual)
            and all(values_equal(expected[k], actual[k]) for k in expected)
        )
    return False


def _show(value: Json) -> str:
    return json.dumps(value, sort_keys=True)


def _task_label(step_name: str, task: Mapping[str, Any]) -> str:
    index = task.get("index")
    where = f", index {index}" if index is not None else ""
    return f"{step_name}[task {task.get('id')}{where}]"


def _check_artifacts(label: str, task: Mapping[str, Any], values: Mapping[str, Json]) -> list[str]:
    out: list[str] = []
    for name, expected in values.items():
        got = task["artifacts"].get(name, {"missing": "not read"})
        if "value" not in got:
            out.append(
                f"{label}: artifact {name!r} missing ({got['missing']}), expected {_show(expected)}"
            )
        elif not values_equal(expected, got["value"]):
            out.append(
                f"{label}: artifact {name!r} is {_show(got['value'])}, expected {_show(expected)}"
            )
    return out


def _check_absent(label: str, task: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    return [
        f"{label}: artifact {name!r} should be absent, "
        f"found {_show(task['artifacts'][name]['value'])}"
        for name in names
        if "value" in task["artifacts"].get(name, {})
    ]


def _check_stdout(label: str, task: Mapping[str, Any], lines: Sequence[str]) -> list[str]:
    if not lines:
        return []
    stdout = task.get("stdout")
    if stdout is None:
        return [f"{label}: stdout unreadable ({task.get('stdout_error', 'not read')})"]
    printed = [line.rstrip("\r") for line in stdout.splitlines()]
    return [
        f"{label}: stdout lacks the line {line!r}; stdout was {stdout[-500:]!r}"
        for line in lines
        if line not in printed
    ]


def _selected(task: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    if "index" in entry and task.get("index") != entry["index"]:
        return False
    for name, expected in entry.get("where", {}).items():
        got = task["artifacts"].get(name, {})
        if "value" not in got or not values_equal(expected, got["value"]):
            return False
    return True


def _error_texts(observation: Observation) -> list[str]:
    texts = list(observation["run"].get("failure", []))
    for entry in observation["steps"].values():
        for task in entry["tasks"]:
            texts.extend(task.get("failure", []))
    return texts


def check(vector: Vector, observation: Observation, exit_code: int) -> list[str]:
    """Every difference between the vector's `expect` and what was observed (empty: conformant).

    `exit_code` is the flow CLI's exit status: 0 exactly when the run is expected to succeed.
    """
    expect = vector["expect"]
    problems: list[str] = []
    steps: Mapping[str, Any] = observation["steps"]

    # Status.
    succeeded = expect["status"] == "succeeded"
    run_ok = observation["run"].get("successful")
    if run_ok is not succeeded:
        problems.append(
            f"run: successful is {run_ok!r}, expected {succeeded!r} "
            f"(run failure: {observation['run'].get('failure') or 'none recorded'})"
        )
    if (exit_code == 0) is not succeeded:
        problems.append(f"CLI: exit code {exit_code}, expected {'0' if succeeded else 'non-zero'}")

    # Error.
    if "error" in expect:
        texts = _error_texts(observation)
        if not any(expect["error"] in text for text in texts):
            stderr_hint = any(
                expect["error"] in task.get("stderr", "")
                for entry in steps.values()
                for task in entry["tasks"]
            )
            problems.append(
                f"error: no recorded failure contains {expect['error']!r}; recorded: {texts!r}"
                + (" (the failed task's stderr does contain it)" if stderr_hint else "")
            )

    # Task counts.
    for step_name, count in expect.get("task_counts", {}).items():
        entry = steps.get(step_name, {"tasks": []})
        found = len(entry["tasks"])
        if found != count:
            why = f" (lookup: {entry['lookup_error']})" if "lookup_error" in entry else ""
            problems.append(f"{step_name}: {found} task(s), expected {count}{why}")

    def tasks_of(step_name: str, section: str) -> list[Mapping[str, Any]]:
        entry = steps.get(step_name, {"tasks": []})
        if not entry["tasks"]:
            why = f" (lookup: {entry['lookup_error']})" if "lookup_error" in entry else ""
            problems.append(f"{step_name}: expect.{section} needs tasks but the step has none{why}")
        return list(entry["tasks"])

    for step_name, values in expect.get("artifacts", {}).items():
        for task in tasks_of(step_name, "artifacts"):
            problems.extend(_check_artifacts(_task_label(step_name, task), task, values))
    for step_name, names in expect.get("absent", {}).items():
        for task in tasks_of(step_name, "absent"):
            problems.extend(_check_absent(_task_label(step_name, task), task, names))
    for step_name, lines in expect.get("stdout", {}).items():
        for task in tasks_of(step_name, "stdout"):
            problems.extend(_check_stdout(_task_label(step_name, task), task, lines))
    for step_name, entries in expect.get("tasks", {}).items():
        all_tasks = tasks_of(step_name, "tasks")
        for n, entry in enumerate(entries):
            chosen = [t for t in all_tasks if _selected(t, entry)]
            if not chosen:
                selector = {k: entry[k] for k in ("index", "where") if k in entry}
                seen = [
                    {
                        "index": t.get("index"),
                        **{k: v.get("value") for k, v in t["artifacts"].items()},
                    }
                    for t in all_tasks
                ]
                problems.append(
                    f"{step_name}: expect.tasks[{n}] selects no task with {_show(selector)}; "
                    f"tasks: {_show(seen)}"
                )
            for task in chosen:
                label = _task_label(step_name, task)
                problems.extend(_check_artifacts(label, task, entry.get("artifacts", {})))
                problems.extend(_check_absent(label, task, entry.get("absent", [])))
                problems.extend(_check_stdout(label, task, entry.get("stdout", [])))
    return problems


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    """`generate` or `observe` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write the Python flow of a vector")
    gen.add_argument("vector", type=Path)
    gen.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    obs = sub.add_parser("observe", help="read a finished run through the client API")
    obs.add_argument("vector", type=Path)
    obs.add_argument("run_id")
    obs.add_argument("--out", type=Path, required=True, help="file to write the JSON to")
    args = parser.parse_args(argv)

    vector = load_vector(args.vector)
    if args.command == "generate":
        source = generate_flow(vector)
        if args.output:
            args.output.write_text(source, encoding="utf-8")
        else:
            sys.stdout.write(source)
        return 0
    observation = observe(vector, args.run_id)
    args.out.write_text(json.dumps(observation, indent=1, allow_nan=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
