"""Parameters: types, parsing raw values, errors, defaults, IncludeFile, specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from polyflow._authoring.flowspec import FlowSpec
from polyflow._authoring.members import flow_parameters
from polyflow._authoring.parameters import (
    IncludeFile,
    JSONType,
    Parameter,
    ParameterContext,
    ParameterKind,
)
from polyflow.exceptions import ParameterError


@pytest.mark.parametrize(
    ("default", "kind"),
    [
        (None, ParameterKind.STRING),
        ("x", ParameterKind.STRING),
        (3, ParameterKind.INT),
        (0.5, ParameterKind.FLOAT),
        (True, ParameterKind.BOOL),
        ({"a": 1}, ParameterKind.JSON),
    ],
)
def test_type_inferred_from_default(default: Any, kind: ParameterKind) -> None:
    assert Parameter("p", default=default).kind is kind


@pytest.mark.parametrize(
    ("type_", "raw", "value"),
    [
        (str, " a b ", " a b "),
        (int, " 42 ", 42),
        (int, "-7", -7),
        (float, "2.5", 2.5),
        (float, "1e3", 1000.0),
        (bool, "true", True),
        (bool, "Yes", True),
        (bool, "0", False),
        (bool, "off", False),
        (JSONType, '{"a": [1, 2]}', {"a": [1, 2]}),
        (JSONType, "3", 3),
    ],
)
def test_parse(type_: Any, raw: str, value: Any) -> None:
    assert Parameter("p", type=type_).parse(raw) == value


@pytest.mark.parametrize(
    ("type_", "raw", "what"),
    [
        (int, "4.5", "a valid integer"),
        (int, str(2**63), "a 64-bit integer"),
        (float, "abc", "a valid number"),
        (bool, "maybe", "a valid boolean"),
        (JSONType, "{bad", "valid JSON"),
    ],
)
def test_parse_error_names_parameter_and_value(type_: Any, raw: str, what: str) -> None:
    with pytest.raises(ParameterError) as info:
        Parameter("alpha", type=type_).parse(raw)
    assert "'alpha'" in str(info.value)
    assert repr(raw) in str(info.value)
    assert what in str(info.value)
    assert info.value.parameter == "alpha"


def test_separator_splits_strings_only() -> None:
    p = Parameter("names", separator=",", default="a,b")
    assert p.parse("x,y,z") == ["x", "y", "z"]
    assert p.resolve(None) == ["a", "b"]
    with pytest.raises(ParameterError, match="separator"):
        Parameter("n", type=int, separator=",")


def test_resolve_default_required_and_callable() -> None:
    assert Parameter("n", type=int, default="5").resolve(None) == 5
    assert Parameter("f", type=float, default=2).resolve(None) == 2.0
    assert Parameter("n", default=3).resolve("9") == 9
    assert Parameter("opt").resolve(None) is None
    with pytest.raises(ParameterError, match="Missing value for required parameter 'req'"):
        Parameter("req", required=True).resolve(None)

    seen: list[ParameterContext] = []

    def compute(ctx: ParameterContext) -> int:
        seen.append(ctx)
        return 11

    p = Parameter("computed", type=int, default=compute)
    assert p.spec().default_json == ""
    assert p.resolve(None, ParameterContext("F", "alice", "")) == 11
    assert seen[0].parameter_name == "computed" and seen[0].flow_name == "F"


@pytest.mark.parametrize("name", ["tag", "run-id", "run_id", "max-num-splits", "Namespace", "with"])
def test_reserved_names(name: str) -> None:
    with pytest.raises(ParameterError, match="reserved"):
        Parameter(name)


def test_declaration_errors() -> None:
    with pytest.raises(ParameterError, match="unsupported type"):
        Parameter("p", type=list)
    with pytest.raises(ParameterError, match="cannot infer a type"):
        Parameter("p", default=(1, 2))
    with pytest.raises(ParameterError, match=r"'p'.*not a valid integer"):
        Parameter("p", type=int, default="x")


def test_spec() -> None:
    spec = Parameter("alpha", default=0.1, help="Rate", required=True).spec()
    assert (spec.name, spec.type, spec.default_json, spec.required, spec.help) == (
        "alpha",
        ParameterKind.FLOAT,
        "0.1",
        True,
        "Rate",
    )
    assert Parameter("cfg", type=JSONType, default='{"k": [1]}').spec().default_json == (
        '{"k": [1]}'
    )


def test_include_file_reads_text_bytes_and_parses(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    text = IncludeFile("data")
    assert text.kind is ParameterKind.FILE
    assert text.parse(str(path)) == "a,b\n1,2\n"
    assert IncludeFile("data", is_text=False).parse(str(path)) == b"a,b\n1,2\n"
    parsed = IncludeFile("data", parser=lambda s: s.splitlines())
    assert parsed.parse(str(path)) == ["a,b", "1,2"]
    with_default = IncludeFile("data", default=str(path))
    assert with_default.resolve(None) == "a,b\n1,2\n"
    spec = IncludeFile("data", is_text=False, encoding="latin-1", default=str(path)).spec()
    assert (spec.type, spec.is_text, spec.encoding) == (ParameterKind.FILE, False, "latin-1")
    assert spec.default_json == f'"{path}"'


def test_include_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"'data'.*cannot read file"):
        IncludeFile("data").parse(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ParameterError, match="not utf-8 text"):
        IncludeFile("data").parse(str(bad))


class ParamFlow(FlowSpec):
    lr = Parameter("learning-rate", default=0.1)
    count = Parameter("count", default=2)


def test_flow_parameters_attribute_and_read_only() -> None:
    params = flow_parameters(ParamFlow)
    assert [(p.attribute, p.name) for p in params] == [("lr", "learning-rate"), ("count", "count")]
    flow = ParamFlow(use_cli=False)
    assert flow.lr == 0.1  # outside a task: the default
    with pytest.raises(AttributeError, match="Cannot set parameter 'lr'"):
        flow.lr = 1.0
    assert isinstance(ParamFlow.lr, Parameter)


def test_duplicate_parameter_names() -> None:
    class Dup(FlowSpec):
        a = Parameter("x")
        b = Parameter("x")

    with pytest.raises(ParameterError, match="share the name 'x'"):
        flow_parameters(Dup)
