"""DERP: Tailscale's relay protocol. The server lives in spanza._derp_server."""

from __future__ import annotations

from spanza._derp_server import (
    DerpServer,
    generate_node_key,
    load_derper_key,
    load_mesh_key,
    node_public_key,
    write_self_signed_cert,
)

__all__ = [
    "DerpServer",
    "generate_node_key",
    "load_derper_key",
    "load_mesh_key",
    "node_public_key",
    "write_self_signed_cert",
]
