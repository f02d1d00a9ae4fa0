"""The stub generator: the committed stubs are current, a plugin's decorator gets in with its
arguments, and the package builds as a PEP 561 stub-only wheel."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .checkers import CHECKERS, REPO, STUB_ROOT, compare, run_checker

GENERATOR = REPO / "stubs" / "generate_stubs.py"
PLUGIN = Path(__file__).resolve().parent / "plugin"
STUB_PACKAGE = STUB_ROOT / "polyflow-stubs"


def _generate(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,
    )


def test_committed_stubs_are_current() -> None:
    proc = _generate("--check")
    assert proc.returncode == 0, proc.stderr


def test_check_fails_on_stale_stubs(tmp_path: Path) -> None:
    shutil.copytree(STUB_ROOT, tmp_path / "copy")
    target = tmp_path / "copy" / "polyflow-stubs" / "_authoring" / "current.pyi"
    target.write_text(target.read_text().replace("def run_id", "def run_idd"))
    (tmp_path / "copy" / "polyflow-stubs" / "client" / "_run.pyi").unlink()
    proc = _generate("--check", "--out", str(tmp_path / "copy"))
    assert proc.returncode == 1
    assert "stale polyflow-stubs" in proc.stderr
    assert "current.pyi" in proc.stderr and "_run.pyi" in proc.stderr


def _bound_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


@pytest.mark.parametrize("module", ["polyflow", "polyflow.client", "polyflow.exceptions"])
def test_stub_exports_the_runtime_surface(module: str) -> None:
    runtime = importlib.import_module(module)
    parts = module.split(".")[1:]
    path = (
        STUB_PACKAGE.joinpath(*parts, "__init__.pyi")
        if hasattr(runtime, "__path__")
        else (STUB_PACKAGE.joinpath(*parts[:-1], parts[-1] + ".pyi"))
    )
    tree = ast.parse(path.read_text())
    stub_all = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    )
    assert sorted(stub_all) == sorted(runtime.__all__)
    assert set(runtime.__all__) <= _bound_names(tree)


def test_every_wire_module_ships_its_pyi() -> None:
    wire = REPO / "stubs" / "wire" / "polyflow" / "api"
    for pyi in wire.rglob("*.pyi"):
        shipped = STUB_PACKAGE / "api" / pyi.relative_to(wire)
        assert shipped.read_bytes() == pyi.read_bytes(), shipped
    for module in wire.rglob("*_pb2*.py"):
        assert (STUB_PACKAGE / "api" / module.relative_to(wire)).with_suffix(".pyi").exists()


def _install_plugin(site: Path) -> None:
    """Lay out the test plugin as an installed distribution with an entry point."""
    shutil.copy(PLUGIN / "pf_kube_plugin.py", site)
    dist = site / "pf_kube_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pf-kube-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[polyflow.decorators]\nkube = pf_kube_plugin:KubeDecorator\n"
    )


@pytest.fixture(scope="module")
def plugin_stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stubs generated with the test plugin installed."""
    root = tmp_path_factory.mktemp("plugin")
    site = root / "site"
    site.mkdir()
    _install_plugin(site)
    out = root / "out"
    proc = _generate("--out", str(out), pythonpath=site)
    assert proc.returncode == 0, proc.stderr
    assert "kube" in proc.stdout
    return out


def test_plugin_decorator_gets_its_arguments(plugin_stubs: Path) -> None:
    text = (plugin_stubs / "polyflow-stubs" / "__init__.pyi").read_text()
    assert "def kube(func: _StepFunction, /) -> _StepFunction:" in text
    assert (
        "def kube(*, image: str | None = None, cpu: float = 1.0, secrets: list[str] = [], "
        "namespace: str = 'default') -> Callable[[_StepFunction], _StepFunction]:"
    ) in text
    assert "Run the step's tasks on Kubernetes." in text  # the docstring, for hovering


@pytest.mark.parametrize("checker", CHECKERS)
def test_plugin_decorator_is_type_checked(plugin_stubs: Path, checker: str, tmp_path: Path) -> None:
    case = PLUGIN / "plugin_case.py"
    diagnostics = run_checker(checker, [case], tmp_path, (plugin_stubs,))
    problems = compare(case, checker, diagnostics)
    assert not problems, "\n".join(problems)


def test_builds_a_stub_only_wheel(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(STUB_ROOT, source)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("polyflow_stubs-*.whl")
    version = (STUB_ROOT / "VERSION").read_text().strip()
    assert wheel.name == f"polyflow_stubs-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {
        str(p.relative_to(STUB_ROOT)).replace(os.sep, "/") for p in STUB_PACKAGE.rglob("*.pyi")
    }
    shipped = {n for n in names if n.startswith("polyflow-stubs/")}
    assert shipped == expected
    assert not any(n.endswith(".py") for n in names)
