"""`spanza.netstack.Link`: what a host's packets go through (a Protocol;
in its own module so that importing spanza.netstack does not import typing)."""

from __future__ import annotations

from typing import Any, Protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from spanza.netstack import Host


class Link(Protocol):
    """Where a host's packets go, and where packets for it come from.

    ``output()`` returns a C ``ns_packet_fn`` and its context pointer;
    ``attach(host)`` starts delivering packets to ``host.ptr`` (through
    ``ns_host_input`` on the loop thread); ``detach(host)`` stops it, and is
    called before the host is freed (`host` then has only ``ptr``: it may
    be called by the garbage collector's finalizer). A ``runtime``
    attribute, if present, is the runtime hosts on this link default to.
    """

    def output(self) -> tuple[Any, Any]: ...
    def attach(self, host: Host) -> None: ...
    def detach(self, host: Any) -> None: ...
