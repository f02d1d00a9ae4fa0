"""Stored artifacts as a flow sees them: references, lazy tables, and a join's ``inputs``.

A task starts with *references* to the artifacts of its input task(s)
(:class:`StoredArtifact`: name, digest, encoding). Values are decoded only when the step
reads them, through an :data:`ArtifactLoader` the worker supplies, and cached.

A join step receives :class:`Inputs`: one read-only :class:`InputView` per parent task,
iterable, indexable, and addressable by branch step name (``inputs.train.score``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

__all__ = [
    "ArtifactLoader",
    "ArtifactTable",
    "ForeachFrame",
    "InputView",
    "Inputs",
    "StoredArtifact",
    "foreach_item",
]


@dataclass(frozen=True)
class StoredArtifact:
    """A reference to one stored artifact value (the proto's ArtifactRef)."""

    name: str
    """The artifact's name."""
    digest: str
    """``sha256:<hex>`` of the encoded bytes."""
    encoding: str
    """``json``, ``pickle-v5``, ``rds``..."""
    size: int = 0
    """Number of encoded bytes."""
    type_name: str = ""
    """The value's type as the writing language names it."""


@dataclass(frozen=True)
class ForeachFrame:
    """One level of foreach nesting above a task (outermost first in a stack)."""

    step: str
    """The step that fanned out."""
    var: str
    """The artifact iterated over."""
    index: int
    """The task's index at this level."""
    num_splits: int
    """Number of splits at this level."""
    value_repr: str = ""
    """A short representation of the item."""


ArtifactLoader = Callable[[StoredArtifact], Any]
"""Reads and decodes one stored artifact."""


def foreach_item(values: Any, index: int) -> Any:
    """Item ``index`` of a foreach artifact, as ``self.input`` gives it.

    Indexes when the value supports it; mappings, sets and other iterables are walked
    with ``itertools.islice`` (the order the foreach counted them in).
    """
    if not isinstance(values, Mapping):
        try:
            return values[index]
        except (TypeError, KeyError):
            pass
    return next(itertools.islice(iter(values), index, None))


class ArtifactTable:
    """Artifacts by name, as references, decoded on first access and cached."""

    def __init__(
        self, refs: Mapping[str, StoredArtifact] | None = None, loader: ArtifactLoader | None = None
    ) -> None:
        """Create a table.

        Args:
            refs: The references, by artifact name.
            loader: Reads a reference's value; None for a table that cannot load.
        """
        self.refs: dict[str, StoredArtifact] = dict(refs or {})
        """The references (inherited or merged), by name."""
        self._loader = loader
        self._loaders: dict[str, ArtifactLoader] = {}
        self._values: dict[str, Any] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.refs

    def get(self, name: str) -> Any:
        """The value of ``name``, loaded on first access.

        Raises:
            KeyError: No such artifact.
        """
        try:
            return self._values[name]
        except KeyError:
            pass
        ref = self.refs[name]
        loader = self._loaders.get(name, self._loader)
        if loader is None:
            raise KeyError(name)
        value = loader(ref)
        self._values[name] = value
        return value

    def is_loaded(self, name: str) -> bool:
        """Whether ``name``'s value was decoded (so it may have been changed in place)."""
        return name in self._values

    def loaded_value(self, name: str) -> Any:
        """The decoded value of a loaded artifact (:meth:`is_loaded` must be true)."""
        return self._values[name]

    def add(
        self,
        ref: StoredArtifact,
        value: Any = None,
        *,
        loaded: bool = False,
        loader: ArtifactLoader | None = None,
    ) -> None:
        """Add a reference (e.g. merged from another table).

        Args:
            ref: The reference.
            value: Its value, when ``loaded``.
            loaded: The value is known already.
            loader: Reads this reference (default: the table's loader).
        """
        self.refs[ref.name] = ref
        self._values.pop(ref.name, None)
        self._loaders.pop(ref.name, None)
        if loader is not None:
            self._loaders[ref.name] = loader
        if loaded:
            self._values[ref.name] = value

    def discard(self, name: str) -> None:
        """Forget ``name``."""
        self.refs.pop(name, None)
        self._values.pop(name, None)
        self._loaders.pop(name, None)

    @property
    def loader(self) -> ArtifactLoader | None:
        """The loader, shared with tables derived from this one."""
        return self._loader


def frame_value(table: ArtifactTable, frame: ForeachFrame) -> Any:
    """The item a foreach frame stands for, read from the artifacts in ``table``.

    Returns None when the frame's artifact is not in the table.
    """
    if frame.var not in table:
        return None
    return foreach_item(table.get(frame.var), frame.index)


class InputView:
    """A read-only view of one parent task of a join: ``inp.<artifact>``."""

    def __init__(
        self,
        step: str,
        pathspec: str,
        table: ArtifactTable,
        foreach_stack: Sequence[ForeachFrame] = (),
    ) -> None:
        """Create a view.

        Args:
            step: The parent task's step.
            pathspec: The parent task's pathspec.
            table: Its artifacts.
            foreach_stack: Its foreach frames, outermost first.
        """
        object.__setattr__(self, "_pf_step", step)
        object.__setattr__(self, "_pf_pathspec", pathspec)
        object.__setattr__(self, "_pf_table", table)
        object.__setattr__(self, "_pf_frames", tuple(foreach_stack))

    _pf_step: str
    _pf_pathspec: str
    _pf_table: ArtifactTable
    _pf_frames: tuple[ForeachFrame, ...]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_pf_"):
            raise AttributeError(name)
        table: ArtifactTable = self._pf_table
        if name in table:
            return table.get(name)
        raise AttributeError(
            f"Step {self._pf_step!r} ({self._pf_pathspec}) has no artifact {name!r}"
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"Cannot set {name!r}: the inputs of a join are read-only; set artifacts on self"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Cannot delete {name!r}: the inputs of a join are read-only")

    def __getstate__(self) -> object:
        raise TypeError(
            "The inputs of a join cannot be stored as an artifact; store the values you need, "
            "e.g. self.x = inp.x"
        )

    def __dir__(self) -> list[str]:
        return sorted({*self._pf_table.refs, "index", "input", "foreach_stack"})

    def __repr__(self) -> str:
        return f"<input {self._pf_pathspec}>"

    @property
    def index(self) -> int | None:
        """The parent task's index in its innermost foreach, or None."""
        return self._pf_frames[-1].index if self._pf_frames else None

    @property
    def input(self) -> Any:
        """The item of the parent task's innermost foreach, or None."""
        return frame_value(self._pf_table, self._pf_frames[-1]) if self._pf_frames else None

    def foreach_stack(self) -> list[tuple[int, int, Any]]:
        """``(index, num_splits, value)`` for each foreach level, outermost first."""
        return [(f.index, f.num_splits, frame_value(self._pf_table, f)) for f in self._pf_frames]


class Inputs(Sequence[InputView]):
    """The parent tasks of a join, in order (foreach index, or the split's target order)."""

    def __init__(self, views: Sequence[InputView]) -> None:
        """Create the collection."""
        self._views = tuple(views)

    @overload
    def __getitem__(self, index: int) -> InputView: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[InputView]: ...

    def __getitem__(self, index: int | slice) -> InputView | Sequence[InputView]:
        return self._views[index]

    def __len__(self) -> int:
        return len(self._views)

    def __iter__(self) -> Iterator[InputView]:
        return iter(self._views)

    def __getattr__(self, name: str) -> InputView:
        if not name.startswith("_"):
            for view in self._views:
                if view._pf_step == name:
                    return view
        raise AttributeError(f"The join has no input from a step named {name!r}")

    def __getstate__(self) -> object:
        raise TypeError("The inputs of a join cannot be stored as an artifact")

    def __repr__(self) -> str:
        return f"<inputs {[v._pf_pathspec for v in self._views]}>"
