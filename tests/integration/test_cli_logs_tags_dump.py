"""``python flow.py logs|tag|dump`` and the client's tag API, against a real daemon and real
workers: every option, and the errors (unknown pathspecs, system tags)."""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.integration.conftest import FlowProject, FlowResult

pytestmark = pytest.mark.slow

OTHER_USER = "someone-else"


@pytest.fixture(scope="module")
def project(
    shared_project: FlowProject, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlowProject]:
    """A project of this module's own, so that tag listings see only its runs."""
    own = type(shared_project)(tmp_path_factory.mktemp("logs-tags-dump") / "project")
    yield own
    own.stop_daemon()


@dataclass(frozen=True)
class Runs:
    """Runs made once for the module (ids)."""

    hello: str
    foreach: str
    dump: str


@pytest.fixture(scope="module")
def runs(project: FlowProject) -> Runs:
    return Runs(
        hello=project.run_flow_ok("hello.py"),
        foreach=project.run_flow_ok("foreach.py"),
        dump=project.run_flow_ok("dump_values.py"),
    )


def _task_id(project: FlowProject, pathspec: str) -> str:
    """The id of the (first) task of a step."""
    from polyflow import Step

    with project.client_env():
        tasks = list(Step(pathspec, _namespace_check=False))
        return tasks[-1].id  # newest first: the last is the first task


def _fails(result: FlowResult, status: int, *needles: str) -> None:
    assert result.returncode == status, result.describe()
    for needle in needles:
        assert needle in result.output, result.describe()


# --- logs -------------------------------------------------------------------------------------
class TestLogs:
    def test_logs_of_a_step_a_task_and_with_the_flow_name(
        self, project: FlowProject, runs: Runs
    ) -> None:
        run = runs.hello
        task = _task_id(project, f"HelloFlow/{run}/hello")
        for pathspec in (f"{run}/hello", f"{run}/hello/{task}", f"HelloFlow/{run}/hello"):
            for command in (["logs"], ["logs", "show"]):
                result = project.run_flow("hello.py", *command, pathspec).assert_ok()
                # What the task printed, unchanged, on stdout; which task and stream on stderr.
                assert result.stdout == "Polyflow says hi\na warning on stderr\n", result.describe()
                assert f"Logs of task HelloFlow/{run}/hello/{task}, attempt 0" in result.stderr
                assert "stdout:" in result.stderr and "stderr:" in result.stderr

    def test_stream_options(self, project: FlowProject, runs: Runs) -> None:
        path = f"{runs.hello}/hello"
        only_out = project.run_flow("hello.py", "logs", "--stdout", path).assert_ok()
        assert only_out.stdout == "Polyflow says hi\n"
        only_err = project.run_flow("hello.py", "logs", path, "--stderr").assert_ok()
        assert only_err.stdout == "a warning on stderr\n"
        both = project.run_flow("hello.py", "logs", "--stdout", "--stderr", path).assert_ok()
        assert both.stdout == "Polyflow says hi\na warning on stderr\n"
        explicit = project.run_flow("hello.py", "logs", "--both", path).assert_ok()
        assert explicit.stdout == both.stdout
        _fails(project.run_flow("hello.py", "logs", "--no-both", path), 2, "nothing to show")
        empty = project.run_flow("hello.py", "logs", f"{runs.hello}/start", "--stderr")
        assert empty.assert_ok().stdout == ""
        assert "stderr: (empty)" in empty.stderr

    def test_quiet_prints_only_the_logs(self, project: FlowProject, runs: Runs) -> None:
        result = project.run_flow("hello.py", "--quiet", "logs", f"{runs.hello}/hello")
        assert result.assert_ok().stdout == "Polyflow says hi\na warning on stderr\n"
        assert result.stderr == ""

    def test_every_task_of_a_foreach_step_in_task_order(
        self, project: FlowProject, runs: Runs
    ) -> None:
        result = project.run_flow("foreach.py", "logs", f"{runs.foreach}/process").assert_ok()
        assert result.stdout == "item 0: apple\nitem 1: banana\nitem 2: cherry\n"
        headers = re.findall(
            rf"Logs of task ForeachFlow/{runs.foreach}/process/(\d+)", result.stderr
        )
        assert len(headers) == 3 and headers == sorted(headers, key=int)

    def test_attempt(self, project: FlowProject, runs: Runs) -> None:
        path = f"{runs.hello}/hello"
        first = project.run_flow("hello.py", "logs", "--attempt", "0", path).assert_ok()
        assert first.stdout == "Polyflow says hi\na warning on stderr\n"
        _fails(
            project.run_flow("hello.py", "logs", "--attempt", "1", path),
            1,
            "has no attempt 1: it made 1 attempt, numbered from 0",
        )
        _fails(project.run_flow("hello.py", "logs", "--attempt", "-1", path), 2, "--attempt")

    def test_attempts_of_a_retried_task(self, project: FlowProject) -> None:
        run = project.run_flow_ok("retried_logs.py")
        path = f"{run}/start"
        first = project.run_flow("retried_logs.py", "logs", path, "--attempt", "0").assert_ok()
        assert first.stdout.startswith("output of attempt 0\nTraceback")
        assert "RuntimeError: the first attempt fails" in first.stdout
        assert ", attempt 0" in first.stderr
        latest = project.run_flow("retried_logs.py", "logs", path).assert_ok()
        assert latest.stdout == "output of attempt 1\n" and ", attempt 1" in latest.stderr
        second = project.run_flow("retried_logs.py", "logs", "--attempt", "1", "--stdout", path)
        assert second.assert_ok().stdout == "output of attempt 1\n"
        _fails(
            project.run_flow("retried_logs.py", "logs", path, "--attempt", "2"),
            1,
            "has no attempt 2: it made 2 attempts, numbered from 0",
        )

    def test_unknown_or_malformed_pathspecs(self, project: FlowProject, runs: Runs) -> None:
        run = runs.hello
        _fails(project.run_flow("hello.py", "logs", "99999/start"), 1, "'HelloFlow/99999'")
        _fails(
            project.run_flow("hello.py", "logs", f"{run}/nope"),
            1,
            f"Step 'HelloFlow/{run}/nope' does not exist",
        )
        _fails(
            project.run_flow("hello.py", "logs", f"{run}/start/99999"),
            1,
            f"Task 'HelloFlow/{run}/start/99999' does not exist",
        )
        for bad in ("start", f"{run}/start/1/extra", f"OtherFlow/{run}/start/1"):
            _fails(project.run_flow("hello.py", "logs", bad), 2, "is not run_id/step_name")
        _fails(project.run_flow("hello.py", "logs"), 2, "PATHSPEC")

    def test_output_survives_a_killed_worker(self, project: FlowProject) -> None:
        id_file = project.run_id_file()
        result = project.run_flow("killed_worker.py", "run", "--run-id-file", str(id_file))
        _fails(result, 1, "killed by signal 9")
        run = id_file.read_text().strip()
        logs = project.run_flow("killed_worker.py", "logs", f"{run}/die").assert_ok()
        assert logs.stdout == "last words before the kill\na last warning before the kill\n"
        from polyflow import Run

        with project.client_env():
            task = Run(f"KilledWorkerFlow/{run}")["die"].task
            assert task is not None and not task.successful
            assert task.stdout == "last words before the kill\n"

    def test_max_log_size_truncates_the_stored_logs_with_a_marker(
        self, project: FlowProject
    ) -> None:
        small = project.run_flow_ok("chatty.py", "--max-log-size", "0.001")
        limit = round(0.001 * 1024 * 1024)  # 1049 bytes
        for stream in ("stdout", "stderr"):
            result = project.run_flow("chatty.py", "logs", f"--{stream}", f"{small}/start")
            text = result.assert_ok().stdout
            marker = (
                f"[polyflow] log truncated: {stream} exceeded {limit} bytes (--max-log-size); "
                "later output was dropped"
            )
            assert text.startswith(f"{stream} line 0000 "), result.describe()
            assert text.endswith("\n" + marker + "\n"), result.describe()
            assert text.count(marker) == 1
            assert len(text.encode()) <= limit + len(marker) + 2
            assert f"{stream} line 0399" not in text
        # Another step of the same run is well under the limit.
        end = project.run_flow("chatty.py", "logs", f"{small}/end").assert_ok()
        assert end.stdout == "the end\n"
        # The default (10 MB) keeps everything.
        full = project.run_flow_ok("chatty.py")
        text = project.run_flow("chatty.py", "logs", "--stdout", f"{full}/start").stdout
        assert text.count("\n") == 400 and "log truncated" not in text
        _fails(project.run_flow("chatty.py", "run", "--max-log-size", "0"), 2, "--max-log-size")


# --- tags -------------------------------------------------------------------------------------
def _user_tags(project: FlowProject, pathspec: str) -> set[str]:
    from polyflow import Run

    with project.client_env():
        return set(Run(pathspec, _namespace_check=False).user_tags)


def _runs_with(project: FlowProject, *tags: str) -> list[str]:
    from polyflow import Flow, namespace

    with project.client_env():
        namespace(None)
        return [run.id for run in Flow("HelloFlow").runs(*tags)]


class TestTagCommands:
    def test_add_remove_replace(self, project: FlowProject) -> None:
        run = project.run_flow_ok("hello.py", "--tag", "first")
        pathspec = f"HelloFlow/{run}"
        added = project.run_flow("hello.py", "tag", "add", "--run-id", run, "foo", "bar")
        assert "Operation successful. New tags:" in added.assert_ok().stdout
        assert f"{pathspec}\n    user tags:   bar, first, foo\n" in added.stdout
        assert "system tags: " in added.stdout and "user:tester" in added.stdout
        assert _user_tags(project, pathspec) == {"first", "foo", "bar"}
        assert run in _runs_with(project, "foo", "bar")

        removed = project.run_flow("hello.py", "tag", "remove", "--run-id", run, "bar", "absent")
        assert "user tags:   first, foo" in removed.assert_ok().stdout
        assert run not in _runs_with(project, "bar")

        replaced = project.run_flow(
            "hello.py", "tag", "replace", "--run-id", run, "--remove", "foo", "--add", "baz"
        )
        assert "user tags:   baz, first" in replaced.assert_ok().stdout
        assert _user_tags(project, pathspec) == {"first", "baz"}
        assert run in _runs_with(project, "baz") and run not in _runs_with(project, "foo")

        quiet = project.run_flow("hello.py", "--quiet", "tag", "add", "--run-id", run, "q")
        line = quiet.assert_ok().stdout.strip()
        assert re.fullmatch(rf"{pathspec} ; [^;]*user:tester[^;]* ; baz,first,q", line), line

    def test_system_tags_cannot_change(self, project: FlowProject) -> None:
        run = project.run_flow_ok("hello.py")
        for tag in ("user:tester", "runtime:dev"):
            _fails(
                project.run_flow("hello.py", "tag", "remove", "--run-id", run, tag),
                1,
                f"tag {tag!r} is a system tag of the run",
                "SYSTEM_TAG_IMMUTABLE",
            )
        for tag in ("user:bob", "runtime:prod", "python_version:2.7", "polyflow_version:0"):
            _fails(
                project.run_flow("hello.py", "tag", "add", "--run-id", run, "ok", tag),
                1,
                "has the prefix of a system tag",
                "SYSTEM_TAG_IMMUTABLE",
            )
        _fails(
            project.run_flow(
                "hello.py",
                "tag",
                "replace",
                "--run-id",
                run,
                "--remove",
                "user:tester",
                "--add",
                "x",
            ),
            1,
            "SYSTEM_TAG_IMMUTABLE",
        )
        assert _user_tags(project, f"HelloFlow/{run}") == set()  # nothing half-applied
        # Adding one of the run's own system tags does nothing (Metaflow's rule).
        same = project.run_flow("hello.py", "tag", "add", "--run-id", run, "user:tester")
        assert "user tags:   (none)" in same.assert_ok().stdout

    def test_errors(self, project: FlowProject) -> None:
        run = project.run_flow_ok("hello.py")
        latest = project.run_flow("hello.py", "tag", "add", "x")
        _fails(latest, 1, "--run-id", "The latest run of HelloFlow in namespace user:tester is ")
        _fails(project.run_flow("hello.py", "tag", "add", "--run-id", run, ""), 1, "INVALID_TAG")
        _fails(project.run_flow("hello.py", "tag", "add", "--run-id", run, "x" * 501), 1, "500")
        _fails(project.run_flow("hello.py", "tag", "add", "--run-id", run), 2, "TAGS")
        _fails(
            project.run_flow("hello.py", "tag", "add", "--run-id", "99999", "x"),
            1,
            "Run HelloFlow/99999 does not exist",
        )
        _fails(project.run_flow("hello.py", "tag", "add", "--run-id", "1/2", "x"), 2, "run id")
        for options, needle in (
            ((), "at least one tag to --add and one to --remove"),
            (("--add", "x"), "or use 'tag add'"),
            (("--remove", "x"), "or use 'tag remove'"),
        ):
            result = project.run_flow("hello.py", "tag", "replace", "--run-id", run, *options)
            _fails(result, 2, needle)
        never = project.run_flow("one_step.py", "tag", "add", "--run-id", "1", "x")
        _fails(never, 1, "No run of OneStepFlow found: run the flow before tagging")

    def test_namespaces(self, project: FlowProject) -> None:
        theirs = project.run_flow_ok("hello.py", env={"POLYFLOW_USER": OTHER_USER})
        _fails(
            project.run_flow("hello.py", "tag", "add", "--run-id", theirs, "mine"),
            1,
            f"Run HelloFlow/{theirs} is not in namespace user:tester",
        )
        ns = f"user:{OTHER_USER}"
        result = project.run_flow(
            "hello.py", "tag", "add", "--namespace", ns, "--run-id", theirs, "mine"
        )
        assert "user tags:   mine" in result.assert_ok().stdout
        anywhere = project.run_flow(
            "hello.py", "tag", "add", "--namespace", "", "--run-id", theirs, "global"
        )
        assert "user tags:   global, mine" in anywhere.assert_ok().stdout
        missing = project.run_flow(
            "hello.py", "tag", "add", "--namespace", "user:nobody", "--run-id", theirs, "x"
        )
        _fails(missing, 1, "No run of HelloFlow found in namespace user:nobody")


@pytest.fixture(scope="module")
def listed(project: FlowProject) -> tuple[str, str]:
    """Two runs of a flow no other test runs: (mine, another user's)."""
    mine = project.run_flow_ok("dump_values.py", "--tag", "listed-mine", "--tag", "shared")
    theirs = project.run_flow_ok(
        "dump_values.py",
        "--tag",
        "listed-theirs",
        "--tag",
        "shared",
        env={"POLYFLOW_USER": OTHER_USER},
    )
    return mine, theirs


class TestTagList:
    def _list(self, project: FlowProject, *args: str) -> FlowResult:
        return project.run_flow("dump_values.py", "tag", "list", *args).assert_ok()

    def test_default_lists_every_run_together(
        self, project: FlowProject, listed: tuple[str, str]
    ) -> None:
        mine, theirs = listed
        out = self._list(project).stdout
        lines = out.splitlines()
        flow = "DumpValuesFlow"
        assert f"{flow}/{theirs}" in lines[0] and f"{flow}/{mine}" in lines[0]
        assert "listed-mine, listed-theirs, shared" in lines[1]
        assert "user:tester" in lines[2] and f"user:{OTHER_USER}" in lines[2]
        assert self._list(project, "--all").stdout == out

    def test_my_runs_hide_system_tags_and_one_run(
        self, project: FlowProject, listed: tuple[str, str]
    ) -> None:
        theirs = listed[1]
        out = self._list(project, "--my-runs", "--hide-system-tags").stdout
        assert "listed-mine" in out and "listed-theirs" not in out
        assert "system tags" not in out and "user:" not in out
        one = self._list(project, "--run-id", theirs).stdout
        assert one.splitlines() == [
            f"DumpValuesFlow/{theirs}",
            "    user tags:   listed-theirs, shared",
            one.splitlines()[2],
        ]
        assert one.splitlines()[2].startswith("    system tags: ")
        assert self._list(project, theirs).stdout == one

    def test_groupings_flat_and_quiet(self, project: FlowProject, listed: tuple[str, str]) -> None:
        mine, theirs = listed
        by_run = self._list(project, "--group-by-run", "--hide-system-tags").stdout
        assert f"DumpValuesFlow/{theirs}\n    user tags:   listed-theirs, shared\n" in by_run
        assert f"DumpValuesFlow/{mine}\n    user tags:   listed-mine, shared\n" in by_run
        by_tag = self._list(project, "--group-by-tag", "--hide-system-tags").stdout
        assert f"user tag 'shared': DumpValuesFlow/{theirs}, DumpValuesFlow/{mine}" in by_tag
        assert f"user tag 'listed-mine': DumpValuesFlow/{mine}" in by_tag
        assert "system tag" not in by_tag
        with_system = self._list(project, "--group-by-tag").stdout
        assert f"system tag 'user:{OTHER_USER}': DumpValuesFlow/{theirs}" in with_system
        flat = self._list(project, "--flat", "--hide-system-tags").stdout
        assert flat.splitlines() == ["listed-mine", "listed-theirs", "shared"]
        assert "runtime:dev" in self._list(project, "--flat").stdout.splitlines()
        quiet = project.run_flow(
            "dump_values.py", "--quiet", "tag", "list", "--group-by-tag", "--hide-system-tags"
        )
        assert f"user:shared ; DumpValuesFlow/{theirs},DumpValuesFlow/{mine}" in quiet.stdout

    def test_option_conflicts_and_errors(
        self, project: FlowProject, listed: tuple[str, str]
    ) -> None:
        for args in (
            ("--all", "--my-runs"),
            ("--group-by-tag", "--group-by-run"),
            ("--flat", "--group-by-run"),
            ("--run-id", listed[0], listed[0]),
            ("--run-id", listed[0], "--all"),
        ):
            _fails(project.run_flow("dump_values.py", "tag", "list", *args), 2)
        _fails(
            project.run_flow("dump_values.py", "tag", "list", "--run-id", "99999"),
            1,
            "Run DumpValuesFlow/99999 does not exist",
        )
        _fails(project.run_flow("one_step.py", "tag", "list"), 1, "has never been run")
        _fails(
            project.run_flow(
                "dump_values.py", "tag", "list", "--my-runs", env={"POLYFLOW_USER": "nobody"}
            ),
            1,
            "You (user:nobody) have no run of DumpValuesFlow",
        )


class TestClientTagApi:
    def test_add_remove_replace_and_filters(self, project: FlowProject) -> None:
        run_id = project.run_flow_ok("hello.py")
        from polyflow import Flow, Run

        with project.client_env():
            run = Run(f"HelloFlow/{run_id}")
            system = run.system_tags
            assert {"user:tester", "runtime:dev"} <= system
            run.add_tag("a")
            run.add_tags(["b", "c"])
            assert run.user_tags == {"a", "b", "c"}
            assert run.tags == {"a", "b", "c"} | system
            run.remove_tag("b")
            run.remove_tags(["c", "never-there"])
            assert run.user_tags == {"a"}
            run.replace_tag("a", "d")
            assert run.user_tags == {"d"}
            run.replace_tags(["d"], ["e", "f"])
            assert run.user_tags == {"e", "f"} and run.system_tags == system
            run.add_tag(["g", "h"])  # Metaflow accepts an iterable here too
            run.remove_tag(["g", "h"])
            assert Run(f"HelloFlow/{run_id}").user_tags == {"e", "f"}  # a fresh read agrees
            ids = [r.id for r in Flow("HelloFlow").runs("e", "f")]
            assert ids == [run_id]
            assert [r.id for r in Flow("HelloFlow").runs("e", "d")] == []
            end = run.end_task
            assert end is not None and end.data.total == 6  # the graph survived the updates

    def test_refusals(self, project: FlowProject) -> None:
        run_id = project.run_flow_ok("hello.py", "--tag", "kept")
        from polyflow import Run
        from polyflow.exceptions import InvalidArgumentError

        with project.client_env():
            run = Run(f"HelloFlow/{run_id}")
            before = run.tags
            cases = [
                (lambda: run.remove_tag("user:tester"), "SYSTEM_TAG_IMMUTABLE"),
                (lambda: run.add_tag("user:mallory"), "SYSTEM_TAG_IMMUTABLE"),
                (lambda: run.replace_tag("user:tester", "x"), "SYSTEM_TAG_IMMUTABLE"),
                (lambda: run.add_tags([]), "NO_TAG_CHANGE"),
                (lambda: run.add_tag(""), "INVALID_TAG"),
                (lambda: run.add_tags([f"t{i}" for i in range(50)]), "TOO_MANY_TAGS"),
            ]
            for call, reason in cases:
                with pytest.raises(InvalidArgumentError) as caught:
                    call()
                assert caught.value.reason == reason
            with pytest.raises(TypeError, match="a tag must be a string"):
                run.add_tags([5])  # type: ignore[list-item]
            run.add_tag("user:tester")  # the run's own system tag: nothing happens
            assert run.tags == before
            assert Run(f"HelloFlow/{run_id}").tags == before

    def test_request_ids_make_retries_safe(self, project: FlowProject) -> None:
        run_id = project.run_flow_ok("hello.py")
        from polyflow._daemon import get_client

        with project.client_env():
            client = get_client()
            name = f"flows/HelloFlow/runs/{run_id}"
            assert list(client.mutate_run_tags(name, add=["x"], request_id="r-1").tags) == ["x"]
            client.mutate_run_tags(name, remove=["x"], request_id="r-2")
            again = client.mutate_run_tags(name, add=["x"], request_id="r-1")
            assert list(again.tags) == [] and not again.HasField("graph")


# --- dump -------------------------------------------------------------------------------------
class TestDump:
    def test_a_task_and_a_step(self, project: FlowProject, runs: Runs) -> None:
        run = runs.dump
        task = _task_id(project, f"DumpValuesFlow/{run}/start")
        expected = [
            "big [size: 5002 type: builtins.str] = "
            "<not loaded: 5002 bytes stored, over --max-value-size 1000>",
            "greeting [size: 10 type: builtins.str] = 'hi there'",
            "numbers [size: 7 type: builtins.list] = [1, 2, 3]",
            f"zeros [size: 131 type: builtins.bytes] = {bytes(100)!r}",
        ]
        for pathspec in (f"{run}/start", f"{run}/start/{task}", f"DumpValuesFlow/{run}/start"):
            result = project.run_flow("dump_values.py", "dump", pathspec).assert_ok()
            assert result.stdout.splitlines() == expected, result.describe()
            assert f"Artifacts of task DumpValuesFlow/{run}/start/{task}:" in result.stderr
        end = project.run_flow("dump_values.py", "dump", f"{run}/end").assert_ok()
        assert "total [size: 1 type: builtins.int] = 6" in end.stdout.splitlines()

    def test_every_task_of_a_foreach_step(self, project: FlowProject, runs: Runs) -> None:
        result = project.run_flow(
            "foreach.py", "dump", f"{runs.foreach}/process", "--include", "item,position"
        ).assert_ok()
        items = [
            line.split(" = ")[1] for line in result.stdout.splitlines() if line.startswith("item ")
        ]
        assert items == ["'apple'", "'banana'", "'cherry'"]
        assert len(re.findall("Artifacts of task ForeachFlow/", result.stderr)) == 3

    def test_options(
        self, project: FlowProject, runs: Runs, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        path = f"{runs.dump}/start"
        include = project.run_flow(
            "dump_values.py",
            "dump",
            path,
            "--include",
            "zeros,greeting,nothere",
            "--max-value-size",
            "200",
        ).assert_ok()
        lines = include.stdout.splitlines()
        assert [line.split(" ")[0] for line in lines] == ["greeting", "zeros"]
        assert lines[1].endswith("... [truncated: the repr has 403 characters]")
        assert len(lines[1].split(" = ", 1)[1]) == 200 + len(
            "... [truncated: the repr has 403 characters]"
        )
        assert "(no artifact named 'nothere'" in include.stderr
        names_only = project.run_flow("dump_values.py", "dump", path, "--max-value-size", "0")
        assert all(
            line.endswith("= <not loaded: --max-value-size is 0>")
            for line in names_only.assert_ok().stdout.splitlines()
        )
        # Python flows store no private ("_") artifacts: --private adds nothing here (the
        # filtering itself is unit-tested), but is accepted.
        private = project.run_flow("dump_values.py", "dump", path, "--private").assert_ok()
        plain = project.run_flow("dump_values.py", "dump", path, "--no-private").assert_ok()
        assert private.stdout == plain.stdout
        _fails(project.run_flow("dump_values.py", "dump", path, "--max-value-size", "-1"), 2)

        out = tmp_path_factory.mktemp("dump") / "artifacts.pkl"
        written = project.run_flow(
            "dump_values.py", "--quiet", "dump", f"{runs.dump}/start", "--file", str(out)
        ).assert_ok()
        assert written.stdout == "" and written.stderr == ""
        task = _task_id(project, f"DumpValuesFlow/{runs.dump}/start")
        with open(out, "rb") as handle:
            data = pickle.load(handle)
        assert data == {
            f"{runs.dump}/start/{task}": {
                "big": "x" * 5000,  # --file writes every value uncut
                "greeting": "hi there",
                "numbers": [1, 2, 3],
                "zeros": bytes(100),
            }
        }
        loud = project.run_flow(
            "dump_values.py", "dump", path, "--file", str(out), "--include", "numbers"
        )
        assert f"Artifacts written to {out}" in loud.assert_ok().stderr
        with open(out, "rb") as handle:
            assert pickle.load(handle) == {f"{runs.dump}/start/{task}": {"numbers": [1, 2, 3]}}

    def test_unknown_or_malformed_pathspecs(self, project: FlowProject, runs: Runs) -> None:
        run = runs.dump
        _fails(
            project.run_flow("dump_values.py", "dump", "99999/start"), 1, "'DumpValuesFlow/99999'"
        )
        _fails(
            project.run_flow("dump_values.py", "dump", f"{run}/nope"),
            1,
            f"Step 'DumpValuesFlow/{run}/nope' does not exist",
        )
        _fails(
            project.run_flow("dump_values.py", "dump", f"{run}/start/99999"),
            1,
            f"Task 'DumpValuesFlow/{run}/start/99999' does not exist",
        )
        _fails(project.run_flow("dump_values.py", "dump", "nope"), 2, "is not run_id/step_name")


def test_help_lists_the_new_commands(project: FlowProject) -> None:
    result = project.run_flow("hello.py", "help").assert_ok()
    for usage in ("logs [OPTIONS] COMMAND", "tag [OPTIONS] COMMAND", "dump [OPTIONS] PATHSPEC"):
        assert usage in result.output, result.describe()
