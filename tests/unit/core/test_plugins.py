"""Plugin registries: built-ins without entry-point scans, third-party plugins by entry point."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from polyflow_core._version import __version__
from polyflow_core.executors.base import Executor
from polyflow_core.plugins import (
    BUILTIN_PLUGINS,
    EXECUTORS_GROUP,
    PluginError,
    Registry,
    executors,
)

REPO = Path(__file__).resolve().parents[3]


def test_builtins_are_the_entry_points_pyproject_registers() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"]
    for group, plugins in BUILTIN_PLUGINS.items():
        assert dict(plugins) == declared[group], group


def test_the_version_is_the_installed_distributions() -> None:
    assert importlib.metadata.version("polyflow") == __version__


def test_loading_a_builtin_reads_no_entry_point() -> None:
    code = (
        "import sys\n"
        "from polyflow_core.plugins import datastores, executors, metadata_stores\n"
        "for registry, name in ((executors(), 'local'), (datastores(), 'local'),"
        " (metadata_stores(), 'sqlite')):\n"
        "    registry.load(name)\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "False"


def test_a_builtin_name_is_taken_and_unknown_names_list_the_known_ones() -> None:
    registry = executors()
    from polyflow_core.executors.local import LocalExecutor

    assert registry.load("local") is LocalExecutor
    assert "local" in registry.names()
    with pytest.raises(PluginError) as taken:
        registry.register("local", LocalExecutor)
    assert taken.value.reason == "DUPLICATE_PLUGIN"
    with pytest.raises(PluginError) as unknown:
        registry.load("nope")
    assert unknown.value.reason == "PLUGIN_NOT_FOUND"
    assert "local" in str(unknown.value)


def _install_plugin(site: Path, distribution: str, name: str, target: str) -> None:
    """A distribution (dist-info only) declaring one executor entry point."""
    info = site / f"{distribution}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{EXECUTORS_GROUP}]\n{name} = {target}\n")


def test_third_party_plugins_are_found_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pf_fake_executor.py").write_text(
        "from polyflow_core.executors.local import LocalExecutor\n"
        "class FakeExecutor(LocalExecutor):\n    pass\n"
    )
    _install_plugin(tmp_path, "pf_fake", "fake", "pf_fake_executor:FakeExecutor")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[Executor] = executors()
    assert "fake" in registry.names()
    assert registry.load("fake").__name__ == "FakeExecutor"


def test_two_distributions_claiming_one_name_are_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(tmp_path, "pf_one", "twin", "pf_one:Executor")
    _install_plugin(tmp_path, "pf_two", "twin", "pf_two:Executor")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as twice:
        executors().load("twin")
    assert twice.value.reason == "DUPLICATE_PLUGIN"
