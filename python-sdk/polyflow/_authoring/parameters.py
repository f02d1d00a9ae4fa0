"""Flow parameters: ``Parameter``, ``JSONType`` and ``IncludeFile``.

A parameter is a class attribute of a flow. Its value is given when a run starts (on the
command line, ``run --alpha 5``, or from the environment), stored as an artifact of the run's
``_parameters`` task, and read in every step as ``self.<attribute>``, read-only.

:meth:`Parameter.parse` turns the raw text of a command-line option or environment variable
into a typed value; :meth:`Parameter.resolve` adds the default and the required check;
:meth:`Parameter.spec` gives the language-neutral :class:`ParameterDef` that goes into the
flow's graph.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from polyflow_core.domain.names import RESERVED_PARAMETER_NAMES

from polyflow.exceptions import ParameterError

__all__ = [
    "RESERVED_PARAMETER_NAMES",
    "IncludeFile",
    "JSONType",
    "Parameter",
    "ParameterContext",
    "ParameterDef",
    "ParameterKind",
]


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class ParameterKind(enum.IntEnum):
    """The type a parameter's value is parsed into (values match the proto's ParameterType)."""

    STRING = 1
    INT = 2
    FLOAT = 3
    BOOL = 4
    JSON = 5
    FILE = 6


class _JSONType:
    """The type of a parameter whose value is any JSON document."""

    def __repr__(self) -> str:
        return "JSONType"


JSONType = _JSONType()
"""Use as ``Parameter(..., type=JSONType)``: the value is parsed from JSON."""


class ParameterContext(NamedTuple):
    """What a callable default receives (a deploy-time parameter)."""

    flow_name: str
    user_name: str
    parameter_name: str
    logger: Callable[..., None] | None = None
    ds_type: str = "local"
    configs: Any = None


@dataclass(frozen=True)
class ParameterDef:
    """A parameter as the graph lists it (maps onto the proto's ParameterSpec)."""

    name: str
    """The name used on the command line (``--name``)."""
    attribute: str
    """The class attribute, which is also the artifact's name."""
    type: ParameterKind
    """The value's type."""
    default_json: str = ""
    """The default encoded as JSON; empty when there is none (or it is computed)."""
    required: bool = False
    """A value must be given."""
    help: str = ""
    """Help text."""
    separator: str = ""
    """Strings only: split the value on this separator into a list."""
    is_text: bool = True
    """FILE only: read the file as text (True) or bytes (False)."""
    encoding: str = "utf-8"
    """FILE only: the text encoding."""
    show_default: bool = True
    """Show the default in ``--help``."""


_PY_TYPES: dict[object, ParameterKind] = {
    str: ParameterKind.STRING,
    int: ParameterKind.INT,
    float: ParameterKind.FLOAT,
    bool: ParameterKind.BOOL,
    JSONType: ParameterKind.JSON,
}


def _infer_kind(name: str, default: object) -> ParameterKind:
    if default is None or callable(default):
        return ParameterKind.STRING
    if isinstance(default, bool):
        return ParameterKind.BOOL
    if isinstance(default, int):
        return ParameterKind.INT
    if isinstance(default, float):
        return ParameterKind.FLOAT
    if isinstance(default, str):
        return ParameterKind.STRING
    if isinstance(default, dict | list):
        return ParameterKind.JSON
    raise ParameterError(
        f"Parameter {name!r}: cannot infer a type from the default {default!r} "
        f"({type(default).__name__}); pass type=str, int, float, bool or JSONType",
        parameter=name,
    )


class Parameter:
    """A flow parameter: a value given when a run starts, read-only in every step.

    Example::

        class TrainFlow(FlowSpec):
            alpha = Parameter("alpha", help="Learning rate", default=0.01)
    """

    kind: ParameterKind
    """The value's type."""

    def __init__(
        self,
        name: str,
        default: Any = None,
        type: Any = None,
        help: str | None = None,
        required: bool | None = None,
        show_default: bool | None = None,
        separator: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Declare a parameter.

        Args:
            name: The command-line name (``--name``).
            default: The value when none is given; a callable makes it computed when the
                run starts (it receives a :class:`ParameterContext`).
            type: ``str``, ``int``, ``float``, ``bool`` or :data:`JSONType`; by default
                the type of ``default``, else ``str``.
            help: Help text.
            required: A value must be given.
            show_default: Show the default in ``--help`` (default True).
            separator: Strings only: split the value on it into a list.
            **kwargs: Extra options for the command line (e.g. ``is_flag``), kept in
                :attr:`kwargs`.

        Raises:
            ParameterError: A reserved or empty name, an unsupported type, a separator on
                a non-string parameter, or a default that is not JSON.
        """
        if not isinstance(name, str) or not name:
            raise ParameterError("a parameter needs a non-empty name", parameter=str(name))
        if name.lower().replace("_", "-") in RESERVED_PARAMETER_NAMES:
            raise ParameterError(
                f"Parameter name {name!r} is reserved (it is an option of 'run'); "
                "choose another name",
                parameter=name,
            )
        self.name = name
        """The command-line name."""
        self.attribute = name
        """The class attribute (and artifact) name; set when the class is created."""
        self.default = default
        """The declared default (may be a callable)."""
        self.help = help or ""
        """Help text."""
        self.required = bool(required)
        """A value must be given."""
        self.show_default = True if show_default is None else bool(show_default)
        """Show the default in ``--help``."""
        self.separator = separator or ""
        """Strings only: split the value into a list on it."""
        self.kwargs: dict[str, Any] = dict(kwargs)
        """Extra command-line options."""
        self.kind = self._resolve_kind(type)
        if self.separator and self.kind is not ParameterKind.STRING:
            raise ParameterError(
                f"Parameter {name!r}: separator is allowed only for string parameters",
                parameter=name,
            )
        self._default_json = self._encode_default()

    def _resolve_kind(self, type_: Any) -> ParameterKind:
        if type_ is None:
            return _infer_kind(self.name, self.default)
        kind = _PY_TYPES.get(type_)
        if kind is None:
            raise ParameterError(
                f"Parameter {self.name!r}: unsupported type {type_!r}; "
                "use str, int, float, bool or JSONType",
                parameter=self.name,
            )
        return kind

    def _encode_default(self) -> str:
        if self.default is None or callable(self.default):
            return ""
        value = self.default
        if isinstance(value, str) and self.kind is not ParameterKind.STRING:
            value = self.parse(value)  # e.g. type=JSONType, default='{"a": 1}'
        try:
            return json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise ParameterError(
                f"Parameter {self.name!r}: the default {self.default!r} cannot be written as JSON",
                parameter=self.name,
            ) from None

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = name

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        """On a flow instance, the parameter's value; on the class, the Parameter."""
        if obj is None:
            return self
        getter = getattr(obj, "_pf_parameter_value", None)
        return self.default_value() if getter is None else getter(self)

    def __set__(self, obj: object, value: object) -> None:
        """Parameters are read-only in steps."""
        raise AttributeError(
            f"Cannot set parameter {self.attribute!r}: parameters are read-only in a flow"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, type={self.kind.name.lower()})"

    def _error(self, raw: str, what: str) -> ParameterError:
        return ParameterError(
            f"Invalid value for parameter {self.name!r}: {raw!r} is not {what}",
            parameter=self.name,
        )

    def parse(self, raw: str) -> Any:
        """Convert the raw text of an option or environment variable to a typed value.

        Args:
            raw: The text as given.

        Returns:
            The typed value (a list of strings when a separator is set).

        Raises:
            ParameterError: ``raw`` is not a valid value; the message names the parameter
                and the value.
        """
        kind = self.kind
        if kind is ParameterKind.STRING:
            return raw.split(self.separator) if self.separator else raw
        if kind is ParameterKind.INT:
            try:
                value = int(raw.strip())
            except ValueError:
                raise self._error(raw, "a valid integer") from None
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise self._error(raw, "a 64-bit integer")
            return value
        if kind is ParameterKind.FLOAT:
            try:
                return float(raw.strip())
            except ValueError:
                raise self._error(raw, "a valid number") from None
        if kind is ParameterKind.BOOL:
            text = raw.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise self._error(raw, "a valid boolean (true/false, yes/no, 1/0)")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise self._error(raw, f"valid JSON ({exc})") from None

    def default_value(self, context: ParameterContext | None = None) -> Any:
        """The default, computed if it is a callable and converted to the parameter's type.

        Args:
            context: Given to a callable default (a neutral one when None).

        Raises:
            ParameterError: The default cannot be converted.
        """
        default = self.default
        if callable(default):
            ctx = context or ParameterContext(flow_name="", user_name="", parameter_name="")
            default = default(ctx._replace(parameter_name=self.name))
        if default is None:
            return None
        if isinstance(default, str) and self.kind is not ParameterKind.STRING:
            return self.parse(default)
        if self.kind is ParameterKind.STRING and self.separator and isinstance(default, str):
            return default.split(self.separator)
        if self.kind is ParameterKind.FLOAT and isinstance(default, int):
            if not isinstance(default, bool):
                return float(default)
        return default

    def resolve(self, raw: str | None, context: ParameterContext | None = None) -> Any:
        """The value for a run: ``raw`` parsed when given, else the default.

        Args:
            raw: The text given on the command line or in the environment, or None.
            context: Given to a callable default.

        Raises:
            ParameterError: Invalid ``raw``, or no value for a required parameter.
        """
        if raw is not None:
            return self.parse(raw)
        value = self.default_value(context)
        if value is None and self.required:
            raise ParameterError(
                f"Missing value for required parameter {self.name!r}", parameter=self.name
            )
        return value

    def spec(self) -> ParameterDef:
        """The parameter as the graph lists it."""
        return ParameterDef(
            name=self.name,
            attribute=self.attribute,
            type=self.kind,
            default_json=self._default_json,
            required=self.required,
            help=self.help,
            separator=self.separator,
            show_default=self.show_default,
        )


class IncludeFile(Parameter):
    """A parameter whose value is the content of a file read when the run starts.

    The file is read on the submitting machine and its content (text, or bytes when
    ``is_text=False``; or what ``parser`` makes of it) is stored as the artifact.
    """

    def __init__(
        self,
        name: str,
        required: bool | None = None,
        is_text: bool = True,
        encoding: str = "utf-8",
        help: str | None = None,
        default: str | None = None,
        parser: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Declare a file parameter.

        Args:
            name: The command-line name; the option takes a path.
            required: A path must be given.
            is_text: Read the file as text (True) or bytes (False).
            encoding: The text encoding.
            help: Help text.
            default: A path read when none is given.
            parser: Turns the content into the value stored.
            **kwargs: Extra command-line options.

        Raises:
            ParameterError: As for :class:`Parameter`.
        """
        self.is_text = is_text
        """Read as text (True) or bytes (False)."""
        self.encoding = encoding
        """The text encoding."""
        self.parser = parser
        """Turns the content into the value stored, when set."""
        super().__init__(name, default=default, type=str, help=help, required=required, **kwargs)
        self.kind = ParameterKind.FILE

    def parse(self, raw: str) -> Any:
        """Read the file at path ``raw`` (see :meth:`read`)."""
        return self.read(raw)

    def default_value(self, context: ParameterContext | None = None) -> Any:
        """The content of the default path, or None when there is no default."""
        default = self.default
        if callable(default):
            ctx = context or ParameterContext(flow_name="", user_name="", parameter_name="")
            default = default(ctx._replace(parameter_name=self.name))
        return None if default is None else self.read(str(default))

    def read(self, path: str) -> Any:
        """The value of the parameter for the file at ``path``.

        Args:
            path: The file to read.

        Returns:
            Its content as text or bytes, passed through ``parser`` when set.

        Raises:
            ParameterError: The file cannot be read or decoded, or the parser failed.
        """
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise ParameterError(
                f"Invalid value for parameter {self.name!r}: cannot read file {path!r} "
                f"({exc.strerror or exc})",
                parameter=self.name,
            ) from None
        content: str | bytes = data
        if self.is_text:
            try:
                content = data.decode(self.encoding)
            except (UnicodeDecodeError, LookupError) as exc:
                raise ParameterError(
                    f"Invalid value for parameter {self.name!r}: file {path!r} is not "
                    f"{self.encoding} text ({exc})",
                    parameter=self.name,
                ) from None
        if self.parser is None:
            return content
        try:
            return self.parser(content)
        except Exception as exc:
            raise ParameterError(
                f"Parameter {self.name!r}: the parser failed on file {path!r}: {exc}",
                parameter=self.name,
            ) from exc

    def spec(self) -> ParameterDef:
        """The parameter as the graph lists it (type FILE)."""
        base = super().spec()
        return ParameterDef(
            name=base.name,
            attribute=base.attribute,
            type=ParameterKind.FILE,
            default_json=base.default_json,
            required=base.required,
            help=base.help,
            is_text=self.is_text,
            encoding=self.encoding,
            show_default=base.show_default,
        )
