"""Run mypy and pyright against the stubs and compare what they report with expectations.

An expectation is a comment naming the checker(s) and a text of the error message::

    # E[mypy]: No overload variant of "retry" matches argument type "str"
    # E[pyright]: cannot be assigned to parameter "times" of type "int"
    @retry(times="3")

``# E: <text>`` is for both checkers, ``# E[mypy]: <text>`` and ``# E[pyright]: <text>`` for
one. Comment lines of their own are about the next line of code (so the formatter never
moves them away from it); a trailing comment is about its own line. A file checks out when
the lines with errors are exactly the lines with expectations and each expected text is found
in an error message of its line (other errors on such a line, consequences of the first, are
allowed).

The checkers see the stub package through their search path (``PYTHONPATH`` for mypy,
``extraPaths`` for pyright) pointed at ``stubs/polyflow-stubs``, the folder that holds the
``polyflow-stubs`` package: exactly how they find it installed in site-packages. The SDK
itself is installed editable through an import hook, which neither checker follows, so every
``polyflow`` type they see comes from the stubs.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tokenize
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STUB_ROOT = REPO / "stubs" / "polyflow-stubs"
"""The folder holding the ``polyflow-stubs`` package (what goes on the search path)."""
CASES = Path(__file__).resolve().parent / "cases"
PYRIGHT = REPO / "tests" / "node" / "node_modules" / ".bin" / "pyright"
CHECKERS = ("mypy", "pyright")

_EXPECTATION = re.compile(r"#\s*E(?:\[(mypy|pyright)\])?:\s*(.*?)\s*(?=#\s*E(?:\[\w+\])?:|$)")


@dataclass(frozen=True)
class Diagnostic:
    """One error a checker reported."""

    file: Path
    line: int
    message: str
    rule: str


def expectations(path: Path, checker: str) -> dict[int, list[str]]:
    """The expected error texts of ``path`` for ``checker``, by line number."""
    found: dict[int, list[str]] = {}
    pending: list[str] = []  # from comment lines, for the next line of code
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            texts = [
                match.group(2)
                for match in _EXPECTATION.finditer(token.string)
                if match.group(1) in (None, checker)
            ]
            alone = not lines[token.start[0] - 1][: token.start[1]].strip()
            if alone:
                pending += texts
            elif texts:
                found.setdefault(token.start[0], []).extend(texts)
        elif pending and token.type not in (
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
        ):
            found.setdefault(token.start[0], []).extend(pending)
            pending = []
    return found


def compare(path: Path, checker: str, diagnostics: Iterable[Diagnostic]) -> list[str]:
    """What differs between the errors reported in ``path`` and its expectations."""
    expected = expectations(path, checker)
    actual: dict[int, list[str]] = {}
    for diagnostic in diagnostics:
        if diagnostic.file.resolve() == path.resolve():
            actual.setdefault(diagnostic.line, []).append(
                f"{diagnostic.message} [{diagnostic.rule}]"
            )
    problems: list[str] = []
    for line in sorted(set(expected) | set(actual)):
        wanted, got = expected.get(line, []), actual.get(line, [])
        where = f"{path.name}:{line} ({checker})"
        if not got:
            problems.append(f"{where}: expected an error containing {wanted[0]!r}, got none")
        elif not wanted:
            problems.append(f"{where}: unexpected error(s): {got}")
        else:
            problems += [
                f"{where}: no error contains {text!r}; got {got}"
                for text in wanted
                if not any(text in message for message in got)
            ]
    return problems


def run_mypy(files: Sequence[Path], workdir: Path, search_path: Sequence[Path]) -> list[Diagnostic]:
    """Run ``mypy --strict`` on ``files`` with ``search_path`` where packages are found."""
    config = workdir / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\npython_version = 3.11\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, search_path))}
    env.pop("MYPYPATH", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--cache-dir",
            str(workdir / "mypy-cache"),
            "--output",
            "json",
            *map(str, files),
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"mypy failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    found: list[Diagnostic] = []
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        item = json.loads(line)
        if item["severity"] == "error":
            path = Path(item["file"])
            found.append(
                Diagnostic(
                    path if path.is_absolute() else workdir / path,
                    int(item["line"]),
                    item["message"],
                    item.get("code") or "",
                )
            )
    return found


def run_pyright(
    files: Sequence[Path], workdir: Path, search_path: Sequence[Path]
) -> list[Diagnostic]:
    """Run pyright (strict mode) on ``files`` with ``search_path`` as its extra paths."""
    if not PYRIGHT.exists():
        raise FileNotFoundError(f"{PYRIGHT} is missing: run ./dev setup (npm ci in tests/node)")
    config = workdir / "pyrightconfig.json"
    settings: Mapping[str, object] = {
        "pythonVersion": "3.11",
        "typeCheckingMode": "strict",
        # The SDK's own source is behind an editable-install import hook that pyright cannot
        # follow; the stubs are all it needs.
        "reportMissingModuleSource": False,
        "extraPaths": [str(p) for p in search_path],
    }
    config.write_text(json.dumps(settings), encoding="utf-8")
    proc = subprocess.run(
        [
            str(PYRIGHT),
            "-p",
            str(config),
            "--pythonpath",
            sys.executable,
            "--outputjson",
            *map(str, files),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"pyright failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    report = json.loads(proc.stdout)
    return [
        Diagnostic(
            Path(item["file"]),
            int(item["range"]["start"]["line"]) + 1,
            " ".join(item["message"].split()),
            item.get("rule", ""),
        )
        for item in report["generalDiagnostics"]
        if item["severity"] == "error"
    ]


def run_checker(
    checker: str, files: Sequence[Path], workdir: Path, search_path: Sequence[Path] = (STUB_ROOT,)
) -> list[Diagnostic]:
    """Run ``checker`` ("mypy" or "pyright") in its own folder under ``workdir``."""
    folder = workdir / checker
    folder.mkdir(parents=True, exist_ok=True)
    runner = run_mypy if checker == "mypy" else run_pyright
    return runner(files, folder, search_path)
