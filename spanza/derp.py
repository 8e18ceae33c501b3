"""DERP: Tailscale's relay protocol, both ends.

    with spanza.derp.DerpServer() as relay, \
         spanza.derp.DerpClient(relay.url, key) as client:
        client.wait_connected(10)

The server lives in spanza._derp_server, the client in spanza.derp_client;
this module is where both are meant to be imported from.
"""

from __future__ import annotations

from spanza._derp_server import (
    DerpServer,
    generate_node_key,
    load_derper_key,
    load_mesh_key,
    node_public_key,
    write_self_signed_cert,
)
from spanza.derp_client import (
    Connected,
    DerpClient,
    Disconnected,
    Event,
    Health,
    PeerGone,
    PeerPresent,
    Refused,
    Restarting,
    backoff_ms,
)

__all__ = [
    "Connected",
    "DerpClient",
    "DerpServer",
    "Disconnected",
    "Event",
    "Health",
    "PeerGone",
    "PeerPresent",
    "Refused",
    "Restarting",
    "backoff_ms",
    "generate_node_key",
    "load_derper_key",
    "load_mesh_key",
    "node_public_key",
    "write_self_signed_cert",
]
