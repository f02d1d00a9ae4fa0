"""The built-in step decorators, as the core reads and enforces them.

An SDK sends each step's decorators as :class:`~polyflow_core.domain.model.DecoratorSpec`
(a name and JSON-encoded attributes). The core acts on five of them, whatever the language
of the step, so that every SDK gets the same behaviour and the same ``check`` verdict:

``retry(times=3, minutes_between_retries=2)``
    A failed attempt is run again, up to ``times`` more times, each retry waiting
    ``minutes_between_retries`` after the failure (the scheduler keeps the task in a timer
    queue meanwhile; the wait holds no worker slot).
``catch(var=None, print_exception=True)``
    The worker handles the exception of the last attempt of the step's code (it stores it in
    ``var`` and takes the step's static transition). The core adds one *fallback* attempt
    after that last attempt, as Metaflow does: when the attempt failed without its worker
    handling it (the process was killed, crashed, or ran over its timeout), the fallback
    attempt runs none of the step's code; the worker's ``@catch`` records the previous
    attempt's failure and the flow goes on. A worker learns which attempt is the fallback
    from ``TaskSpec.max_user_code_retries``. No wait precedes a fallback attempt.
``timeout(seconds=0, minutes=0, hours=0)``
    The worker stops the step's code when the limit is reached (the failure counts as any
    other, so ``retry`` and ``catch`` apply). As a backstop, the scheduler kills a worker
    still running :func:`backstop_seconds` after its launch (code stuck where no signal
    reaches it, e.g. inside C).
``environment(vars={})``
    Variables added to the worker's environment at launch, over the client's: every
    executor gets them in ``LaunchRequest.environment``.
``resources(cpu=1, gpu=None, disk=None, memory=4096, shared_memory=None)``
    Recorded as the task's ``resources`` metadata (JSON, defaults filled in). Executors that
    size workers read them from ``LaunchRequest.decorators``; the local executor ignores them.

A task gets at most :data:`MAX_ATTEMPTS` attempts: ``times + 2 <= 6`` (one first attempt, the
retries, and the room ``catch`` may take), checked at validation (:func:`decorator_problems`).
Values are read leniently here (a malformed attribute gives its default): validation has
already refused a graph with one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from polyflow_core.domain.model import DecoratorSpec, FlowGraph, StepSpec, TransitionKind

__all__ = [
    "BUILTIN_DEFAULTS",
    "CATCH_FALLBACK_ATTEMPTS",
    "MAX_ATTEMPTS",
    "RULE_CATCH_ON_SPLIT",
    "RULE_DECORATOR_ATTRIBUTE",
    "RULE_TOO_MANY_RETRIES",
    "DecoratorProblem",
    "RetrySettings",
    "backstop_seconds",
    "decorator_problems",
    "describe_seconds",
    "environment_variables",
    "retry_delay_seconds",
    "retry_policy",
    "retry_settings",
    "task_metadata",
    "timeout_seconds",
]

MAX_ATTEMPTS = 6
"""Most attempts of one task, counting ``catch``'s fallback (Metaflow's limit)."""
CATCH_FALLBACK_ATTEMPTS = 1
"""Attempts ``catch`` adds after the last attempt of the step's code."""
_RESERVED_FOR_CATCH = MAX_ATTEMPTS - 2  # times + 2 <= MAX_ATTEMPTS

RULE_DECORATOR_ATTRIBUTE = "DECORATOR_ATTRIBUTE"
"""A built-in decorator has an unknown attribute or a value of the wrong type or range."""
RULE_TOO_MANY_RETRIES = "TOO_MANY_RETRIES"
"""``retry(times=N)`` with ``N + 2`` above :data:`MAX_ATTEMPTS`."""
RULE_CATCH_ON_SPLIT = "CATCH_ON_SPLIT"
"""``catch`` on a foreach or switch step."""

BUILTIN_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "retry": {"times": 3, "minutes_between_retries": 2},
    "catch": {"var": None, "print_exception": True},
    "timeout": {"seconds": 0, "minutes": 0, "hours": 0},
    "environment": {"vars": {}},
    "resources": {"cpu": 1, "gpu": None, "disk": None, "memory": 4096, "shared_memory": None},
}
"""Every attribute of each built-in decorator, with its default (the SDKs' defaults too)."""

_BACKSTOP_MIN_GRACE = 10.0
_BACKSTOP_GRACE_FRACTION = 0.1
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

# A checker returns "" for a good value, else what the value should be.
_Checker = Callable[[Any], str]


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return json.dumps(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(minimum: int, *, optional: bool = False) -> _Checker:
    def check(value: Any) -> str:
        if optional and value is None:
            return ""
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return ""
        return f"a whole number of at least {minimum}" + (" (or null)" if optional else "")

    return check


def _number(*, positive: bool, optional: bool = False) -> _Checker:
    def check(value: Any) -> str:
        if optional and value is None:
            return ""
        if _is_number(value) and (value > 0 if positive else value >= 0):
            return ""
        what = "a number above 0" if positive else "a number of at least 0"
        return what + (" (or null)" if optional else "")

    return check


def _boolean(value: Any) -> str:
    return "" if isinstance(value, bool) else "true or false"


def _variable_name(value: Any) -> str:
    if value is None or (isinstance(value, str) and _IDENTIFIER.match(value)):
        return ""
    return "null or an artifact name (letters, digits and _, starting with a letter)"


def _env_vars(value: Any) -> str:
    expected = "a mapping of variable names to strings or numbers"
    if not isinstance(value, dict):
        return expected
    for key, item in value.items():
        if not key or "=" in key or "\0" in key:
            return f"{expected} (bad name {json.dumps(key)})"
        if not (isinstance(item, str) or _is_number(item) or isinstance(item, bool)):
            return f"{expected} ({json.dumps(key)} is {_describe(item)})"
        if isinstance(item, str) and "\0" in item:
            return f"{expected} ({json.dumps(key)} contains a NUL character)"
    return ""


_CHECKERS: Mapping[str, Mapping[str, _Checker]] = {
    "retry": {"times": _whole(0), "minutes_between_retries": _number(positive=False)},
    "catch": {"var": _variable_name, "print_exception": _boolean},
    "timeout": {
        "seconds": _number(positive=False),
        "minutes": _number(positive=False),
        "hours": _number(positive=False),
    },
    "environment": {"vars": _env_vars},
    "resources": {
        "cpu": _number(positive=True),
        "gpu": _whole(0, optional=True),
        "disk": _whole(1, optional=True),
        "memory": _number(positive=True),
        "shared_memory": _whole(1, optional=True),
    },
}


# --- reading attributes ----------------------------------------------------------------------


def _find(step: StepSpec, name: str) -> DecoratorSpec | None:
    """The step's first decorator called ``name``."""
    for decorator in step.decorators:
        if decorator.name == name:
            return decorator
    return None


def _decode(decorator: DecoratorSpec, attribute: str) -> tuple[bool, Any]:
    """(present and valid JSON, value)."""
    text = decorator.attributes.get(attribute)
    if text is None:
        return False, None
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def _values(decorator: DecoratorSpec) -> dict[str, Any]:
    """The attributes of a built-in decorator: given ones that are valid, else defaults."""
    values = dict(BUILTIN_DEFAULTS[decorator.name])
    for attribute, check in _CHECKERS[decorator.name].items():
        present, value = _decode(decorator, attribute)
        if present and not check(value):
            values[attribute] = value
    return values


@dataclass(frozen=True)
class RetrySettings:
    """How a step's failed tasks are retried (from its ``retry`` and ``catch``)."""

    times: int = 0
    """Retries of the step's code (``retry``'s ``times``; 0 without ``retry``)."""
    delay_seconds: float = 0.0
    """Wait before each retry of the step's code."""
    catch: bool = False
    """The step has ``catch``, which adds a fallback attempt."""

    @property
    def max_attempts(self) -> int:
        """Every attempt a task may get, the fallback included."""
        return 1 + self.times + (CATCH_FALLBACK_ATTEMPTS if self.catch else 0)

    def is_fallback(self, attempt: int) -> bool:
        """Whether ``attempt`` (0-based) is ``catch``'s fallback attempt."""
        return attempt > self.times


def retry_settings(step: StepSpec) -> RetrySettings:
    """The retry settings of a step."""
    retry = _find(step, "retry")
    catch = _find(step, "catch") is not None
    if retry is None:
        return RetrySettings(catch=catch)
    values = _values(retry)
    times = min(int(values["times"]), _RESERVED_FOR_CATCH)
    return RetrySettings(
        times=times, delay_seconds=float(values["minutes_between_retries"]) * 60.0, catch=catch
    )


def retry_policy(step: StepSpec) -> int:
    """How many times a failed task of ``step`` is run again (the scheduler's
    ``RetryPolicy``): ``retry``'s ``times``, plus ``catch``'s fallback attempt."""
    return retry_settings(step).max_attempts - 1


def retry_delay_seconds(step: StepSpec, failed_attempt: int) -> float:
    """How long to wait before the attempt that follows ``failed_attempt``: the
    ``retry`` delay before a retry of the step's code, none before a fallback attempt."""
    settings = retry_settings(step)
    return 0.0 if settings.is_fallback(failed_attempt + 1) else settings.delay_seconds


def timeout_seconds(step: StepSpec) -> float:
    """The step's ``timeout`` in seconds; 0 when it has none."""
    timeout = _find(step, "timeout")
    if timeout is None:
        return 0.0
    values = _values(timeout)
    return (
        float(values["seconds"]) + 60.0 * float(values["minutes"]) + 3600.0 * float(values["hours"])
    )


def backstop_seconds(limit: float) -> float:
    """When, after its launch, the core kills an attempt of a step with a ``limit``-second
    timeout: the limit plus a grace for starting the worker and storing artifacts (10 s or
    a tenth of the limit, whichever is longer). The worker's own timer fires first."""
    return limit + max(_BACKSTOP_MIN_GRACE, _BACKSTOP_GRACE_FRACTION * limit)


def describe_seconds(seconds: float) -> str:
    """``2 seconds``, ``1.5 seconds``, ``1 minute 30 seconds``, ``2 hours``."""
    if seconds < 60 or seconds != int(seconds):
        value = f"{seconds:g}"
        return f"{value} second" + ("" if value == "1" else "s")
    whole = int(seconds)
    parts = []
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count} {unit}" + ("" if count == 1 else "s"))
    return " ".join(parts)


def environment_variables(step: StepSpec) -> dict[str, str]:
    """The variables the step's ``environment`` sets (numbers and booleans as JSON text)."""
    environment = _find(step, "environment")
    if environment is None:
        return {}
    values = _values(environment)["vars"]
    return {
        str(key): value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
    }


def task_metadata(step: StepSpec) -> dict[str, str]:
    """Metadata recorded with each task of the step: ``resources`` (JSON) when it has
    ``resources``."""
    resources = _find(step, "resources")
    if resources is None:
        return {}
    return {"resources": json.dumps(_values(resources), sort_keys=True)}


# --- validation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoratorProblem:
    """A built-in decorator that cannot be used as written."""

    rule: str
    """One of the ``RULE_*`` values."""
    message: str
    """A sentence naming the step and the decorator."""
    line: int
    """The decorator's line; 0 when unknown (e.g. attached with ``--with``)."""


def _attribute_problems(step: StepSpec, decorator: DecoratorSpec) -> list[DecoratorProblem]:
    checkers = _CHECKERS[decorator.name]
    problems = []
    unknown = sorted(set(decorator.attributes) - set(checkers))
    if unknown:
        names = ", ".join(f"'{name}'" for name in unknown)
        known = ", ".join(sorted(checkers))
        problems.append(
            DecoratorProblem(
                RULE_DECORATOR_ATTRIBUTE,
                f"Step '{step.name}': @{decorator.name} has no attribute {names} "
                f"(its attributes: {known}).",
                decorator.line,
            )
        )
    for attribute, check in checkers.items():
        text = decorator.attributes.get(attribute)
        if text is None:
            continue
        try:
            value = json.loads(text)
        except ValueError:
            expected, shown = "valid JSON", repr(text)
        else:
            expected, shown = check(value), _describe(value)
        if expected:
            problems.append(
                DecoratorProblem(
                    RULE_DECORATOR_ATTRIBUTE,
                    f"Step '{step.name}': @{decorator.name}'s {attribute} must be {expected}, "
                    f"not {shown}.",
                    decorator.line,
                )
            )
    return problems


def _catch_problems(
    step: StepSpec, decorator: DecoratorSpec, graph: FlowGraph
) -> list[DecoratorProblem]:
    problems = []
    kind = step.transition.kind
    if kind in (TransitionKind.FOREACH, TransitionKind.SWITCH):
        what = "a foreach split" if kind is TransitionKind.FOREACH else "a switch"
        problems.append(
            DecoratorProblem(
                RULE_CATCH_ON_SPLIT,
                f"Step '{step.name}' is {what} and has @catch, which is not supported on "
                f"foreach or switch steps: when such a step fails, its flow cannot go on "
                f"as if next() was called. Move the code that may fail into a step of its own.",
                decorator.line,
            )
        )
    present, var = _decode(decorator, "var")
    taken = {p.name for p in graph.parameters} | set(graph.constants)
    if present and isinstance(var, str) and var in taken:
        problems.append(
            DecoratorProblem(
                RULE_DECORATOR_ATTRIBUTE,
                f"Step '{step.name}': @catch's var '{var}' is a parameter or constant of the "
                f"flow, which steps cannot set; choose another name.",
                decorator.line,
            )
        )
    return problems


def _retry_problems(step: StepSpec, decorator: DecoratorSpec) -> list[DecoratorProblem]:
    present, times = _decode(decorator, "times")
    if not present or _CHECKERS["retry"]["times"](times) or times <= _RESERVED_FOR_CATCH:
        return []
    return [
        DecoratorProblem(
            RULE_TOO_MANY_RETRIES,
            f"Step '{step.name}': @retry(times={times}) asks for too many retries: times can "
            f"be at most {_RESERVED_FOR_CATCH}, since a task gets at most {MAX_ATTEMPTS} "
            f"attempts (times + 2, counting the first attempt and @catch's fallback).",
            decorator.line,
        )
    ]


def _timeout_problems(step: StepSpec, decorator: DecoratorSpec) -> list[DecoratorProblem]:
    values = _values(decorator)
    if values["seconds"] or values["minutes"] or values["hours"]:
        return []
    return [
        DecoratorProblem(
            RULE_DECORATOR_ATTRIBUTE,
            f"Step '{step.name}': @timeout sets no limit: give it seconds, minutes or hours "
            "above 0.",
            decorator.line,
        )
    ]


def decorator_problems(step: StepSpec, graph: FlowGraph) -> list[DecoratorProblem]:
    """Why the built-in decorators of ``step`` cannot be used as written (empty when they
    can). Other decorators are the SDKs' business and are not looked at."""
    problems: list[DecoratorProblem] = []
    for decorator in step.decorators:
        if decorator.name not in _CHECKERS:
            continue
        problems += _attribute_problems(step, decorator)
        if decorator.name == "catch":
            problems += _catch_problems(step, decorator, graph)
        elif decorator.name == "retry":
            problems += _retry_problems(step, decorator)
        elif decorator.name == "timeout" and not _attribute_problems(step, decorator):
            problems += _timeout_problems(step, decorator)
    return problems
