"""mypy and pyright, given only the generated stubs, accept correct Polyflow code and reject
wrong code with the expected error at the expected line (see ``checkers.py``).

The cases (``cases/``):

- ``ok_flow.py``: every graph shape, every built-in decorator bare and with arguments,
  parameters, ``current``; ``ok_client.py``: the client API; ``ok_wire.py``: typed gRPC
  request messages and service stubs; ``ok_grpc_client.py``: the public thin client, when
  the SDK has one (``polyflow.grpc``). No error at all.
- ``wrong_*.py``: an unknown decorator argument, a decorator argument of the wrong type
  (``@retry(times="3")``), misspelt client properties, wrong gRPC message fields, misused
  ``self.next`` and ``current``, wrong arguments to the thin gRPC client (when present):
  each rejected where the comments say.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .checkers import CASES, CHECKERS, STUB_ROOT, Diagnostic, compare, run_checker

GRPC_STUB = STUB_ROOT / "polyflow-stubs" / "grpc.pyi"


def _cases() -> list[Path]:
    cases = sorted(CASES.glob("*.py"))
    if not GRPC_STUB.exists():  # the SDK has no public polyflow.grpc yet
        cases = [c for c in cases if not c.stem.endswith("grpc_client")]
    return cases


CASE_FILES = _cases()


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Diagnostic]]:
    """Each checker run once over every case file."""
    workdir = tmp_path_factory.mktemp("type-checkers")
    return {checker: run_checker(checker, CASE_FILES, workdir) for checker in CHECKERS}


def test_every_kind_of_case_is_present() -> None:
    names = {case.name for case in CASE_FILES}
    assert {"ok_flow.py", "ok_client.py", "ok_wire.py"} <= names
    assert {
        "wrong_decorator_argument.py",
        "wrong_decorator_type.py",
        "wrong_client.py",
        "wrong_wire.py",
    } <= names


@pytest.mark.parametrize("checker", CHECKERS)
@pytest.mark.parametrize("case", CASE_FILES, ids=lambda p: p.stem)
def test_case(case: Path, checker: str, reports: dict[str, list[Diagnostic]]) -> None:
    problems = compare(case, checker, reports[checker])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("checker", CHECKERS)
def test_wrong_cases_expect_errors(checker: str) -> None:
    """A wrong case without expectations would pass vacuously."""
    from .checkers import expectations

    for case in CASE_FILES:
        wanted = expectations(case, checker)
        if case.name.startswith("wrong_"):
            assert wanted, f"{case.name} expects no {checker} error"
        else:
            assert not wanted, f"{case.name} is a correct case but expects errors"


@pytest.mark.parametrize("checker", CHECKERS)
def test_sdk_stubs_themselves_check_clean(
    checker: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The generated SDK stubs are valid and self-consistent (strict mode). The wire
    layer's ``.pyi`` are mypy-protobuf's, left as generated."""
    package = STUB_ROOT / "polyflow-stubs"
    stubs = sorted(p for p in package.rglob("*.pyi") if p.relative_to(package).parts[0] != "api")
    diagnostics = run_checker(checker, stubs, tmp_path_factory.mktemp("self-check"))
    assert not diagnostics, "\n".join(f"{d.file}:{d.line}: {d.message}" for d in diagnostics)
