"""Polyflow against Metaflow, workload by workload, in the same invocation on the same machine.

    .venv/bin/python bench/run.py [--smoke] [--repeat N] [--only NAME[,NAME...]]

Installs Metaflow into its own virtual environment (``.cache/metaflow-<version>``), writes each
workload of ``bench/workloads/`` once (``from metaflow import ...``) and runs the Polyflow copy
with only that import rewritten. Each workload runs under both systems in alternation, several
times, every run in a fresh temporary project folder; the table gives min / median / max per
system and the ratio of the medians (Metaflow / Polyflow: above 1 means Polyflow is faster).
Without ``--smoke`` the table is also written to ``bench/RESULTS.md``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _systems import (
    REPO,
    TMP,
    Measurement,
    Metaflow,
    Polyflow,
    RunFailed,
    System,
    timed,
)

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"
CLIENT_RUNS = 50
"""Runs in the project of the client workload's second measurement: Metaflow's
``latest_run`` grows with the number of runs (the issue's 3.0 ms is about 50 of them)."""


# --- workloads --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """One row (or a few rows) of the table."""

    name: str
    """Short name for ``--only``."""
    title: str
    """What the row says."""
    kind: str
    """``flow``, ``client``, ``import`` or ``metadata``."""
    target: float | None = None
    """The ratio Polyflow must reach (None: report only)."""
    target_text: str = ""
    """The target as the issue words it."""
    file: str = ""
    """``flow``: the workload file in ``bench/workloads``."""
    env: dict[str, str] = field(default_factory=dict)
    """``flow``: environment for the run (sizes)."""
    smoke_env: dict[str, str] = field(default_factory=dict)
    """``flow``: environment in ``--smoke`` mode."""
    args: tuple[str, ...] = ()
    """``flow``: arguments after ``run``."""
    polyflow_mode: str = "fresh"
    """``cold``: no daemon runs, ``run`` starts it (and the time counts); ``fresh``: the
    daemon was started just before; ``warm``: the daemon has served one run already."""
    prerun: bool = False
    """Run once, untimed, in the same project before the timed run."""
    tasks: int = 0
    """Number of tasks of a run (for CPU per task), 0 when not reported."""
    smoke_tasks: int = 0
    """Same in ``--smoke`` mode."""
    repeat: int = 5
    """Default repetitions per system."""
    timeout: float = 1800.0
    """Seconds before a run is abandoned."""


WORKLOADS: list[Workload] = [
    Workload(
        "hello_cold",
        "hello (start → end), cold: `run` starts the daemon",
        "flow",
        target=None,
        target_text="reported",
        file="hello.py",
        polyflow_mode="cold",
        repeat=7,
    ),
    Workload(
        "hello",
        "hello (start → end), warm daemon",
        "flow",
        target=3.0,
        target_text="≥ 3x",
        file="hello.py",
        polyflow_mode="warm",
        repeat=7,
    ),
    Workload(
        "linear10",
        "linear, 10 steps, a small artifact each",
        "flow",
        target=5.0,
        target_text="≥ 5x",
        file="linear10.py",
        repeat=5,
    ),
    Workload(
        "foreach100",
        "foreach over 100 items (x*x, then a join)",
        "flow",
        target=15.0,
        target_text="≥ 15x",
        file="foreach.py",
        env={"BENCH_FOREACH_N": "100"},
        smoke_env={"BENCH_FOREACH_N": "4"},
        tasks=103,
        smoke_tasks=7,
        repeat=3,
    ),
    Workload(
        "foreach1000",
        "foreach over 1,000 items, `--max-num-splits 1000`",
        "flow",
        target=25.0,
        target_text="≥ 25x",
        file="foreach.py",
        env={"BENCH_FOREACH_N": "1000"},
        smoke_env={"BENCH_FOREACH_N": "12"},
        args=("--max-num-splits", "1000"),
        tasks=1003,
        smoke_tasks=15,
        repeat=3,
        timeout=3600.0,
    ),
    Workload(
        "array500",
        "500 MB numpy array written, then read and checksummed",
        "flow",
        target=4.0,
        target_text="≥ 4x",
        file="bigarray.py",
        env={"BENCH_ARRAY_MB": "500"},
        smoke_env={"BENCH_ARRAY_MB": "4"},
        repeat=3,
    ),
    Workload(
        "array500_stored",
        "500 MB numpy array, same bytes already stored",
        "flow",
        target=4.0,
        target_text="≥ 4x",
        file="bigarray.py",
        env={"BENCH_ARRAY_MB": "500"},
        smoke_env={"BENCH_ARRAY_MB": "4"},
        prerun=True,
        repeat=3,
    ),
    Workload(
        "artifacts1000",
        "1,000 small artifacts set in one step, all read in the next",
        "flow",
        target=3.0,
        target_text="≥ 3x",
        file="manyartifacts.py",
        env={"BENCH_ARTIFACTS": "1000"},
        smoke_env={"BENCH_ARTIFACTS": "50"},
        repeat=5,
    ),
    Workload(
        "client",
        "client: `Flow(...).latest_run`, `Run(...).data.x` (warm process, per call)",
        "client",
        target=3.0,
        target_text="≥ 3x",
        repeat=3,
    ),
    Workload(
        "import",
        "`import` of the SDK (fresh interpreter)",
        "import",
        target=1.0,
        target_text="faster",
        repeat=10,
    ),
    Workload(
        "metadata",
        "metadata scale: 10,000 runs and 100,000 tasks stored (Polyflow only)",
        "metadata",
        target=None,
        target_text="a few ms",
        repeat=1,
    ),
]


@dataclass
class Row:
    """One line of the table: measurements per system."""

    title: str
    target: float | None
    target_text: str
    unit: str = "s"
    values: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, system: str, value: float, cpu: float | None = None) -> None:
        self.values.setdefault(system, []).append(value)
        if cpu is not None:
            self.cpu.setdefault(system, []).append(cpu)

    def median(self, system: str) -> float | None:
        found = self.values.get(system)
        return statistics.median(found) if found else None

    def ratio(self) -> float | None:
        mf, pf = self.median("metaflow"), self.median("polyflow")
        if mf is None or pf is None or pf == 0:
            return None
        return mf / pf

    def met(self) -> str:
        ratio = self.ratio()
        if self.target is None or ratio is None:
            return ""
        return "yes" if ratio >= self.target and (self.target > 1 or ratio > 1) else "**no**"


# --- formatting -------------------------------------------------------------------------------
def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        value *= 1000
        return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"
    if value < 0.1:
        return f"{value:.3f}"
    return f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _spread(values: list[float] | None, unit: str) -> str:
    if not values:
        return "-"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{_fmt(low, unit)} / **{_fmt(mid, unit)}** / {_fmt(high, unit)} {unit}"


def _cpu(values: list[float] | None) -> str:
    return f"{statistics.median(values):.2f} s" if values else "-"


def table(rows: Sequence[Row]) -> str:
    """The Markdown table of every row."""
    lines = [
        "| workload | Metaflow min / **median** / max | Polyflow min / **median** / max "
        "| ratio of medians | target | met | CPU median MF / PF |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row.ratio()
        lines.append(
            f"| {row.title} | {_spread(row.values.get('metaflow'), row.unit)} "
            f"| {_spread(row.values.get('polyflow'), row.unit)} "
            f"| {f'{ratio:.1f}x' if ratio is not None else '-'} | {row.target_text} "
            f"| {row.met()} | {_cpu(row.cpu.get('metaflow'))} / {_cpu(row.cpu.get('polyflow'))} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """What the benchmark ran on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# --- running ----------------------------------------------------------------------------------
class Bench:
    """Runs the workloads and collects rows."""

    def __init__(self, systems: list[System], smoke: bool, repeat: int | None) -> None:
        self.systems = systems
        self.smoke = smoke
        self.repeat = repeat
        self.rows: list[Row] = []
        self.extra: list[str] = []

    def _repeats(self, workload: Workload) -> int:
        if self.smoke:
            return 1
        return self.repeat if self.repeat is not None else workload.repeat

    def _order(self, rep: int) -> list[System]:
        return self.systems if rep % 2 == 0 else list(reversed(self.systems))

    def run(self, workload: Workload) -> None:
        runner: Callable[[Workload], None] = {
            "flow": self._flow,
            "client": self._client,
            "import": self._import,
            "metadata": self._metadata,
        }[workload.kind]
        started = time.perf_counter()
        runner(workload)
        print(f"  ({workload.name}: {time.perf_counter() - started:.1f} s)", flush=True)

    # --- flows --------------------------------------------------------------------------------
    def _flow(self, workload: Workload) -> None:
        row = Row(workload.title, workload.target, workload.target_text)
        self.rows.append(row)
        env = workload.smoke_env if self.smoke and workload.smoke_env else workload.env
        tasks = workload.smoke_tasks if self.smoke else workload.tasks
        rss: list[float] = []
        for rep in range(self._repeats(workload)):
            for system in self._order(rep):
                try:
                    measured = self._one_flow(system, workload, env)
                except (RunFailed, subprocess.TimeoutExpired) as error:
                    row.errors.append(f"{system.label}: {error}")
                    print(f"  {system.label} FAILED: {error}", flush=True)
                    continue
                row.add(system.name, measured.wall, measured.cpu)
                if "daemon_peak_rss_mib" in measured.extra:
                    rss.append(measured.extra["daemon_peak_rss_mib"])
                print(
                    f"  {workload.name} {system.name}: {measured.wall:.3f} s wall, "
                    f"{measured.cpu:.2f} s CPU",
                    flush=True,
                )
        if tasks:
            for system in self.systems:
                cpus = row.cpu.get(system.name)
                if cpus:
                    per_task = statistics.median(cpus) / tasks * 1000
                    self.extra.append(
                        f"{workload.name}: {system.label} CPU per task (all processes, "
                        f"median run / {tasks} tasks): **{per_task:.1f} ms**"
                    )
        if rss and workload.name.startswith("foreach"):
            self.extra.append(
                f"{workload.name}: Polyflow daemon peak RSS (VmHWM): "
                f"**{max(rss):.0f} MiB** (max over runs)"
            )

    def _one_flow(self, system: System, workload: Workload, env: dict[str, str]) -> Measurement:
        project, flow = system.new_project(workload.file)
        try:
            if isinstance(system, Polyflow) and workload.polyflow_mode != "cold":
                system.start_daemon(project)
            if workload.prerun or (
                isinstance(system, Polyflow) and workload.polyflow_mode == "warm"
            ):
                system.run_flow(project, flow, workload.args, env, timeout=workload.timeout)
            return system.run_flow(project, flow, workload.args, env, timeout=workload.timeout)
        finally:
            system.cleanup(project)

    # --- client API ---------------------------------------------------------------------------
    def _client(self, workload: Workload) -> None:
        many = 3 if self.smoke else CLIENT_RUNS
        rows: dict[tuple[str, int], Row] = {}
        for count in (1, many):
            for name, call in (
                ("latest_run", "`Flow(...).latest_run`"),
                ("data_x", "`Run(...).data.x`"),
            ):
                rows[(name, count)] = Row(
                    f"client: {call}, {count} run(s) stored (per call, warm process)",
                    workload.target,
                    workload.target_text,
                    unit="ms",
                )
        self.rows += list(rows.values())
        calls = 20 if self.smoke else 300
        for rep in range(self._repeats(workload)):
            for system in self._order(rep):
                project, flow = system.new_project("hello.py")
                try:
                    if isinstance(system, Polyflow):
                        system.start_daemon(project)
                    done = 0
                    for count in (1, many):
                        while done < count:
                            system.run_flow(project, flow, (), {}, timeout=300)
                            done += 1
                        proc = system.python_call(
                            project,
                            [str(BENCH / "client_calls.py"), system.name, str(calls)],
                            {},
                            timeout=300,
                        )
                        times = json.loads(proc.stdout.strip().splitlines()[-1])
                        for name in ("latest_run", "data_x"):
                            rows[(name, count)].add(system.name, statistics.median(times[name]))
                        print(
                            f"  client {system.name}, {count} run(s): latest_run "
                            f"{statistics.median(times['latest_run']) * 1000:.3f} ms, data.x "
                            f"{statistics.median(times['data_x']) * 1000:.3f} ms",
                            flush=True,
                        )
                except (RunFailed, subprocess.TimeoutExpired) as error:
                    rows[("latest_run", 1)].errors.append(f"{system.label}: {error}")
                    print(f"  {system.label} FAILED: {error}", flush=True)
                finally:
                    system.cleanup(project)

    # --- imports ------------------------------------------------------------------------------
    def _import(self, workload: Workload) -> None:
        plain = Row(
            "`import <sdk>` (fresh interpreter, whole process)",
            workload.target,
            workload.target_text,
        )
        flowspec = Row(
            "`from <sdk> import FlowSpec` (fresh interpreter, whole process)",
            workload.target,
            workload.target_text,
        )
        self.rows += [plain, flowspec]
        with tempfile.TemporaryDirectory(prefix="pf-bench-import-", dir=TMP) as folder:
            for rep in range(max(self._repeats(workload), 3)):
                for system in self._order(rep):
                    env = system.env(Path(folder))
                    for row, code in (
                        (plain, f"import {system.name}"),
                        (flowspec, f"from {system.name} import FlowSpec"),
                    ):
                        wall, cpu, _ = timed(
                            [str(system.python), "-c", code],
                            cwd=Path(folder),
                            env=env,
                            timeout=60,
                            what=code,
                        )
                        row.add(system.name, wall, cpu)
        for row in (plain, flowspec):
            print(
                f"  {row.title}: "
                + ", ".join(f"{s.name} {(row.median(s.name) or 0):.3f} s" for s in self.systems),
                flush=True,
            )

    # --- metadata scale -----------------------------------------------------------------------
    def _metadata(self, workload: Workload) -> None:
        runs, tasks = (200, 2000) if self.smoke else (10_000, 100_000)
        argv = [
            sys.executable,
            str(BENCH / "metadata_scale.py"),
            "--runs",
            str(runs),
            "--tasks",
            str(tasks),
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            message = f"metadata_scale.py exited with {proc.returncode}: {proc.stderr[-2000:]}"
            print("  FAILED:", message, flush=True)
            self.extra.append(f"metadata scale: FAILED ({message[:200]})")
            return
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        for key, value in result["timings_ms"].items():
            row = Row(f"metadata ({runs:,} runs, {tasks:,} tasks): {key}", None, "a few ms", "ms")
            for sample in value:
                row.add("polyflow", sample / 1000)
            self.rows.append(row)
            print(f"  {key}: median {statistics.median(value):.3f} ms", flush=True)


# --- main -------------------------------------------------------------------------------------
def _numpy_version() -> str:
    try:
        import numpy

        return str(numpy.__version__)
    except ImportError:  # pragma: no cover - numpy is a dev dependency
        return ""


def _results_md(bench: Bench, info: dict[str, str], command: str, load_after: str) -> str:
    lines = [
        "# Benchmark results: Polyflow against Metaflow",
        "",
        f"Measured {info['date']} with `{command}` (see `bench/README.md`).",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {info['cpu']} |",
        f"| cores | {info['cores']} |",
        f"| memory | {info['memory']} |",
        f"| OS | {info['os']} |",
        f"| Python | {info['python']} |",
        f"| load average (1, 5, 15 min) before / after | {info['load']} / {load_after} |",
        "",
        "Wall time per run (or per call). Ratio = Metaflow median / Polyflow median: above 1 "
        "means Polyflow is faster. CPU is every process of a run (Polyflow: client, daemon, "
        "workers).",
        "",
        table(bench.rows),
        "",
    ]
    if bench.extra:
        lines += ["## Other numbers", ""]
        lines += [f"- {line}" for line in bench.extra]
        lines.append("")
    errors = [f"- {row.title}: {error}" for row in bench.rows for error in row.errors]
    if errors:
        lines += ["## Failures", "", *errors, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="each workload once, tiny sizes, no RESULTS.md"
    )
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per system")
    parser.add_argument("--only", default="", help="comma-separated workload names")
    parser.add_argument(
        "--systems", default="metaflow,polyflow", help="comma-separated: metaflow,polyflow"
    )
    parser.add_argument("--no-install", action="store_true", help="do not install Metaflow")
    parser.add_argument("--results", default="", help="write the Markdown results here")
    args = parser.parse_args(argv)

    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = wanted - {w.name for w in WORKLOADS}
    if unknown:
        parser.error(f"unknown workload(s) {sorted(unknown)}; known: {[w.name for w in WORKLOADS]}")
    names = {name.strip() for name in args.systems.split(",") if name.strip()}
    metaflow = Metaflow()
    systems: list[System] = []
    if "metaflow" in names:
        if not args.smoke and not args.no_install:
            metaflow.install(_numpy_version())
        if metaflow.available():
            systems.append(metaflow)
        else:
            print(f"Metaflow is not installed in {metaflow.python.parent.parent}: skipped")
    if "polyflow" in names:
        polyflow = Polyflow()
        if args.smoke:
            polyflow.settle = 0.3
        systems.append(polyflow)
    if not systems:
        parser.error("no system to run")

    info = machine()
    print(
        f"{info['cpu']}, {info['cores']} cores, {info['memory']}, Python {info['python']}, "
        f"load {info['load']}",
        flush=True,
    )
    bench = Bench(systems, args.smoke, args.repeat)
    for workload in WORKLOADS:
        if wanted and workload.name not in wanted:
            continue
        print(f"== {workload.name}: {workload.title}", flush=True)
        bench.run(workload)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print()
    print(table(bench.rows))
    for line in bench.extra:
        print(f"- {line}")
    failed = [error for row in bench.rows for error in row.errors]
    command = "bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    target = Path(args.results) if args.results else (None if args.smoke else RESULTS)
    if target is not None and not wanted:
        target.write_text(_results_md(bench, info, command.strip(), load_after))
        print(f"\nwritten to {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")
    elif target is not None and args.results:
        target.write_text(_results_md(bench, info, command.strip(), load_after))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
