"""``Polyflow()`` (also ``Metaflow()``): the entry point listing flows, and ``get_metadata``."""

from __future__ import annotations

from collections.abc import Iterator

from polyflow.client._base import core
from polyflow.client._flow import Flow
from polyflow.exceptions import NamespaceMismatchError

__all__ = ["Polyflow", "get_metadata"]


class Polyflow:
    """Every flow the core knows, as Metaflow's ``Metaflow()`` object.

    Iteration and :attr:`flows` show flows with at least one run in the current namespace.
    """

    @property
    def flows(self) -> list[Flow]:
        """The flows with a run in the current namespace, by name."""
        return list(self)

    def __iter__(self) -> Iterator[Flow]:
        for proto in core().list_flows():
            try:
                yield Flow(proto.flow_id, _proto=proto)
            except NamespaceMismatchError:
                continue

    def __getitem__(self, name: str) -> Flow:
        """The flow of this name.

        Raises:
            NotFoundError: (also a KeyError) The flow has no run.
            NamespaceMismatchError: No run of it is in the current namespace.
        """
        return Flow(name)

    def __repr__(self) -> str:
        return "Polyflow()"

    __str__ = __repr__


def get_metadata() -> str:
    """Describe where the client reads metadata, as Metaflow's ``get_metadata()`` does.

    Returns:
        ``local@<root> (<address>)`` for a local daemon, else ``service@<address>``.
    """
    client = core()
    info = client.get_server_info()
    if info.metadata.startswith("sqlite:") and info.root:
        return f"local@{info.root} ({client.address})"
    return f"service@{client.address}"
