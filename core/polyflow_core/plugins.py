"""Plugin registries: executors, datastores and metadata stores, found by name.

Plugins register as entry points, built-ins exactly like third-party ones (``pyproject.toml``)::

    [project.entry-points."polyflow.executors"]
    local = "polyflow_core.executors.local:LocalExecutor"

A :class:`Registry` reads its group lazily: nothing is imported until a plugin is asked for by
name, and then only that plugin. Two entry points of one group sharing a name (two installed
distributions claiming ``s3``) are an explicit error rather than a silent pick. Tests inject
their own factories or ready-made instances with :meth:`Registry.register`.

The built-in plugins (:data:`BUILTIN_PLUGINS`, the same targets as their entry points) are
loaded without reading any entry point: reading them imports ``importlib.metadata`` and scans
every installed distribution, about 20 ms of every daemon start. A built-in name therefore
always means the built-in plugin.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from polyflow_core.datastore.base import BlobStore
from polyflow_core.errors import FailedPreconditionError
from polyflow_core.executors.base import Executor
from polyflow_core.metadata.base import MetadataStore

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "BUILTIN_PLUGINS",
    "DATASTORES_GROUP",
    "EXECUTORS_GROUP",
    "METADATA_GROUP",
    "PluginError",
    "Registry",
    "datastores",
    "executors",
    "metadata_stores",
]

T = TypeVar("T")

EXECUTORS_GROUP = "polyflow.executors"
"""Entry-point group of :class:`~polyflow_core.executors.base.Executor` classes."""
DATASTORES_GROUP = "polyflow.datastores"
"""Entry-point group of :class:`~polyflow_core.datastore.base.BlobStore` classes."""
METADATA_GROUP = "polyflow.metadata"
"""Entry-point group of :class:`~polyflow_core.metadata.base.MetadataStore` classes."""

BUILTIN_PLUGINS: Mapping[str, Mapping[str, str]] = {
    EXECUTORS_GROUP: {"local": "polyflow_core.executors.local:LocalExecutor"},
    DATASTORES_GROUP: {"local": "polyflow_core.datastore.local:LocalBlobStore"},
    METADATA_GROUP: {"sqlite": "polyflow_core.metadata.sqlite:SqliteMetadataStore"},
}
"""The plugins that ship with Polyflow, per group: name -> ``module:attribute`` (the same
targets ``pyproject.toml`` registers as entry points, for other tools to list)."""


class PluginError(FailedPreconditionError):
    """A plugin cannot be found, is registered twice, or is not what its group expects."""

    default_reason = "PLUGIN_ERROR"


class Registry(Generic[T]):
    """The plugins of one entry-point group.

    Args:
        group: The entry-point group, e.g. ``polyflow.executors``.
        base: The class every plugin must produce (checked on creation).
    """

    def __init__(self, group: str, base: type[T]) -> None:
        self.group = group
        """The entry-point group."""
        self.base = base
        """What the group's plugins produce."""
        self._lock = threading.Lock()
        self._builtins = BUILTIN_PLUGINS.get(group, {})
        self._entry_points: dict[str, EntryPoint] | None = None
        self._injected: dict[str, Callable[..., T] | T] = {}
        self._loaded: dict[str, Callable[..., T]] = {}

    def register(self, name: str, plugin: Callable[..., T] | T, *, replace: bool = False) -> None:
        """Add a plugin by hand (tests): a factory (usually a class) or a ready instance,
        which :meth:`create` then returns as is.

        Raises:
            PluginError: The name is taken (installed or registered) and ``replace`` is False.
        """
        with self._lock:
            taken = name in self._injected or name in self._builtins or name in self._discover()
            if taken and not replace:
                raise PluginError(
                    f"a plugin named {name!r} is already registered in {self.group}",
                    reason="DUPLICATE_PLUGIN",
                    metadata={"group": self.group, "name": name},
                )
            self._injected[name] = plugin
            self._loaded.pop(name, None)

    def names(self) -> list[str]:
        """Every available name, sorted (without importing any plugin)."""
        with self._lock:
            return sorted(set(self._builtins) | set(self._discover()) | set(self._injected))

    def load(self, name: str) -> Callable[..., T]:
        """The factory of a plugin, importing its module on first use.

        Raises:
            PluginError: Unknown name, duplicate entry points, or an import failure.
        """
        with self._lock:
            if name in self._injected:
                plugin = self._injected[name]
                if isinstance(plugin, self.base):
                    instance = plugin
                    return lambda *args, **kwargs: instance
                return cast(Callable[..., T], plugin)
            if name in self._loaded:
                return self._loaded[name]
            if name in self._builtins:
                self._loaded[name] = self._load_builtin(name, self._builtins[name])
                return self._loaded[name]
            entry_points = self._discover()
            entry_point = entry_points.get(name)
            if entry_point is None:
                names = set(self._builtins) | set(entry_points) | set(self._injected)
                known = ", ".join(sorted(names)) or "none"
                raise PluginError(
                    f"no plugin named {name!r} in {self.group} (known: {known})",
                    reason="PLUGIN_NOT_FOUND",
                    metadata={"group": self.group, "name": name},
                )
            try:
                factory = entry_point.load()
            except Exception as error:
                raise PluginError(
                    f"plugin {name!r} of {self.group} ({entry_point.value}) cannot be "
                    f"loaded: {error}",
                    reason="PLUGIN_LOAD_FAILED",
                    metadata={"group": self.group, "name": name, "value": entry_point.value},
                ) from error
            if not callable(factory):
                raise PluginError(
                    f"plugin {name!r} of {self.group} ({entry_point.value}) is not callable",
                    reason="PLUGIN_LOAD_FAILED",
                    metadata={"group": self.group, "name": name, "value": entry_point.value},
                )
            self._loaded[name] = cast(Callable[..., T], factory)
            return self._loaded[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        """A plugin instance: ``load(name)(*args, **kwargs)`` (an injected instance as is).

        Raises:
            PluginError: As :meth:`load`, or the factory made something else than
                :attr:`base`.
        """
        instance = self.load(name)(*args, **kwargs)
        if not isinstance(instance, self.base):
            raise PluginError(
                f"plugin {name!r} of {self.group} made a {type(instance).__name__}, not a "
                f"{self.base.__name__}",
                reason="PLUGIN_WRONG_TYPE",
                metadata={"group": self.group, "name": name},
            )
        return instance

    def _load_builtin(self, name: str, target: str) -> Callable[..., T]:
        """Import a built-in plugin's factory (``module:attribute``)."""
        module, _, attribute = target.partition(":")
        try:
            return cast(Callable[..., T], getattr(importlib.import_module(module), attribute))
        except (ImportError, AttributeError) as error:  # a broken installation
            raise PluginError(
                f"built-in plugin {name!r} of {self.group} ({target}) cannot be loaded: {error}",
                reason="PLUGIN_LOAD_FAILED",
                metadata={"group": self.group, "name": name, "value": target},
            ) from error

    def _discover(self) -> dict[str, EntryPoint]:
        """The group's entry points by name, read once (called with the lock held).

        Raises:
            PluginError: Two entry points share a name with different targets.
        """
        if self._entry_points is None:
            from importlib.metadata import entry_points

            found: dict[str, EntryPoint] = {}
            for entry_point in entry_points(group=self.group):
                other = found.get(entry_point.name)
                # The same distribution can be seen twice on sys.path (an editable install
                # plus a build folder): identical targets are one plugin, not a conflict.
                if other is not None and other.value != entry_point.value:
                    raise PluginError(
                        f"two plugins are named {entry_point.name!r} in {self.group}: "
                        f"{other.value} and {entry_point.value}",
                        reason="DUPLICATE_PLUGIN",
                        metadata={
                            "group": self.group,
                            "name": entry_point.name,
                            "first": other.value,
                            "second": entry_point.value,
                        },
                    )
                found[entry_point.name] = entry_point
            self._entry_points = found
        return self._entry_points


def executors() -> Registry[Executor]:
    """A registry of the ``polyflow.executors`` group."""
    return Registry(EXECUTORS_GROUP, Executor)  # type: ignore[type-abstract]


def datastores() -> Registry[BlobStore]:
    """A registry of the ``polyflow.datastores`` group."""
    return Registry(DATASTORES_GROUP, BlobStore)  # type: ignore[type-abstract]


def metadata_stores() -> Registry[MetadataStore]:
    """A registry of the ``polyflow.metadata`` group."""
    return Registry(METADATA_GROUP, MetadataStore)  # type: ignore[type-abstract]
