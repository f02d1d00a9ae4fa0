"""The pure parts of ``logs``, ``dump`` and ``tag``: pathspecs, stream choice, artifact
selection, value formatting and tag listings (the commands themselves run against a real
daemon in ``tests/integration/test_cli_logs_tags_dump.py``)."""

from __future__ import annotations

import click
import pytest
from polyflow._cli._dump import format_value, select_artifacts
from polyflow._cli._logs import _streams
from polyflow._cli._tag import RunTags, format_by_run, format_by_tag
from polyflow._cli._tasks import TaskPath, parse_task_path


def test_pathspecs_start_at_the_run_and_may_name_the_flow() -> None:
    assert parse_task_path("HelloFlow", "12/start") == TaskPath("HelloFlow", "12", "start", None)
    assert parse_task_path("HelloFlow", "12/start/3/") == TaskPath("HelloFlow", "12", "start", "3")
    assert parse_task_path("HelloFlow", "HelloFlow/12/start").task is None
    assert parse_task_path("HelloFlow", "HelloFlow/12/start/3").pathspec == "HelloFlow/12/start/3"
    for bad in ("12", "12/start/3/x", "12//3", "", "OtherFlow/12/start/3"):
        with pytest.raises(click.BadParameter, match="is not run_id/step_name"):
            parse_task_path("HelloFlow", bad)


def test_stream_choice_follows_metaflow() -> None:
    assert _streams(False, False, True) == ["stdout", "stderr"]
    assert _streams(True, False, True) == ["stdout"]
    assert _streams(False, True, True) == ["stderr"]
    assert _streams(True, True, False) == ["stdout", "stderr"]
    with pytest.raises(click.UsageError):
        _streams(False, False, False)


def test_artifact_selection_private_names_and_include() -> None:
    names = ["b", "_private", "a", "_internal"]
    assert select_artifacts(names, [], private=False) == (["a", "b"], [])
    assert select_artifacts(names, [], private=True) == (["_internal", "_private", "a", "b"], [])
    assert select_artifacts(names, ["b", "zz", "_private"], private=False) == (["b"], ["zz"])
    assert select_artifacts(names, ["_private"], private=True) == (["_private"], [])


def test_values_are_cut_with_a_marker() -> None:
    assert format_value("hi", 10) == "'hi'"
    assert format_value("x" * 20, 5) == "'xxxx... [truncated: the repr has 22 characters]"
    assert format_value([1, 2], 6) == "[1, 2]"


def test_tag_listings() -> None:
    runs = [
        RunTags("F/2", frozenset({"b"}), frozenset({"user:x"})),
        RunTags("F/1", frozenset({"a", "b"}), frozenset({"user:x", "runtime:dev"})),
    ]
    assert format_by_run(runs[:1], hide_system=False, quiet=False) == [
        "F/2",
        "    user tags:   b",
        "    system tags: user:x",
    ]
    assert format_by_run(runs, hide_system=True, quiet=True) == ["F/2 ;  ; b", "F/1 ;  ; a,b"]
    assert format_by_run(
        [RunTags("F/3", frozenset(), frozenset())], hide_system=True, quiet=False
    ) == [
        "F/3",
        "    user tags:   (none)",
    ]
    assert format_by_tag(runs, hide_system=False, quiet=True) == [
        "user:a ; F/1",
        "user:b ; F/2,F/1",
        "system:runtime:dev ; F/1",
        "system:user:x ; F/2,F/1",
    ]
    assert format_by_tag(runs, hide_system=True, quiet=False) == [
        "user tag 'a': F/1",
        "user tag 'b': F/2, F/1",
    ]
