"""The DERP transport of a Device: datagrams straight into a DERP client.

    relay = spanza.DerpServer()
    a = spanza.Device(private_key=ka, listen_port=None, derp_url=relay.url)
    a.add_peer(kb.public_key, endpoint=derp_endpoint(kb.public_key),
               allowed_ips=["10.0.0.2/32"])

A peer's endpoint ``derp:<64 hex>`` (the UAPI form; ``derp:nodekey:<hex>``
and `derp_endpoint(key)` give the same) names the DERP public key it is
reached at. The device's own DERP identity is its WireGuard private key
unless ``derp_key`` says otherwise (Tailscale does the same: the node key
is the WireGuard key), so by default a Spanza peer is reached at
``derp:<its WireGuard public key>``. Packets that arrive from DERP key K
count as coming from endpoint ``derp:K``, so a peer that moves to another
key is followed (roaming), as with UDP addresses.

This module gives `Device` its DERP methods (a mixin) and the C calls
behind them (csrc/device/bind_derp.c).
"""

from __future__ import annotations

import os
import time

from spanza import _diagnose
from spanza._derp_opts import client_opts
from spanza._ffi import ffi, lib
from spanza._log import get_logger
from spanza.errors import ConfigError, SpanzaError, check
from spanza.keys import PublicKey, as_key, private_key_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger("spanza.device")

_ENOENT = 2
_EINVAL = 22
_ETIMEDOUT = 110
_ERRLEN = 256


def derp_endpoint(key: Any) -> str:
    """The endpoint text for a peer reached at DERP public key `key`
    (a PublicKey, 32 bytes, ``nodekey:<hex>``, base64): ``derp:<64 hex>``."""
    return "derp:" + as_key(PublicKey, key, "derp endpoint").hex()


class DerpBindMixin:
    """DERP methods of `spanza.Device` (needs its `_use()` and `public_key`)."""

    _derp_url: str | None = None  # the DERP bind's relay, for messages

    def attach_derp(
        self,
        url: str,
        key: Any = None,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        options: dict[str, int] | None = None,
    ) -> PublicKey:
        """Sends this device's datagrams for ``derp:`` endpoints through a
        DERP client for `url`, identified by `key` (a private key; default:
        the device's own). Replaces an earlier DERP bind. Returns the DERP
        public key peers send to (the endpoint they configure for us)."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"derp_url: {url!r} is not http(s)://host[:port]/derp")
        raw = private_key_bytes(self._own_private_key() if key is None else key, "derp_key")
        keep: list[Any] = []
        opts = client_opts(keep, ca_file=ca_file, insecure=insecure, options=options, ca_what="derp_ca_file")
        err = ffi.new("char[]", _ERRLEN)
        with self._use() as p:  # type: ignore[attr-defined]
            rc = lib.dev_py_derp_attach(p, url.encode(), raw, opts, err, _ERRLEN)
        if rc < 0:
            msg = ffi.string(err).decode(errors="replace") or os.strerror(-rc)
            if rc == -_EINVAL:
                raise ConfigError(f"attach_derp: {msg}", _EINVAL)
            check(rc, f"attach_derp: {msg}")
        self._derp_url = url
        pub = self.derp_public_key
        log.debug("DERP bind for %s as %s", url, pub.tailscale)
        return pub

    def _own_private_key(self) -> bytes:
        for line in self.ipc_get().splitlines():  # type: ignore[attr-defined]
            name, _, value = line.partition("=")
            if name == "private_key":
                return bytes.fromhex(value)
        raise ConfigError("derp_key: the device has no private key yet; give derp_key=...")

    def detach_derp(self) -> None:
        """Closes the DERP bind (``derp:`` endpoints are unreachable after)."""
        with self._use() as p:  # type: ignore[attr-defined]
            rc = lib.dev_py_derp_detach(p)
        if rc == -_ENOENT:
            raise ConfigError("detach_derp: the device has no DERP bind")
        check(rc, "detach_derp")

    @property
    def derp_public_key(self) -> PublicKey:
        buf = ffi.new("uint8_t[32]")
        with self._use() as p:  # type: ignore[attr-defined]
            rc = lib.dev_py_derp_public_key(p, buf)
        if rc == -_ENOENT:
            raise ConfigError("the device has no DERP bind (Device(derp_url=...) or attach_derp())")
        check(rc, "derp_public_key")
        return PublicKey(bytes(buf))

    def derp_stats(self) -> dict[str, Any]:
        """The DERP bind's counters and its client's (under "client")."""
        st = ffi.new("struct dev_derp_stats *")
        ds = ffi.new("struct derp_client_stats *")
        with self._use() as p:  # type: ignore[attr-defined]
            rc = lib.dev_py_derp_stats(p, st, ds)
        if rc == -_ENOENT:
            raise ConfigError("the device has no DERP bind (Device(derp_url=...) or attach_derp())")
        check(rc, "derp_stats")
        out: dict[str, Any] = {n: int(getattr(st, n)) for n, _ in ffi.typeof("struct dev_derp_stats").fields}
        out["client"] = {n: int(getattr(ds, n)) for n, _ in ffi.typeof("struct derp_client_stats").fields}
        return out

    def wait_derp_connected(self, timeout: float | None = 10.0) -> None:
        """Waits until the DERP bind is connected. RelayRefusedError or
        RelayError at once when waiting cannot help; TimeoutError (saying
        why) after `timeout` s."""
        url = self._derp_url or "the relay"

        def once(ms: int) -> int:
            end = time.monotonic() + ms / 1000
            while not self.derp_stats()["connected"]:
                if time.monotonic() >= end:
                    return -_ETIMEDOUT
                time.sleep(0.01)
            return 0

        _diagnose.wait_connected(url, once, lambda: self.derp_stats()["client"], self.derp_last_error, timeout)

    def derp_reconnect(self) -> None:
        with self._use() as p:  # type: ignore[attr-defined]
            check(lib.dev_py_derp_reconnect(p), "derp_reconnect")

    def derp_last_error(self) -> str:
        buf = ffi.new("char[]", _ERRLEN)
        with self._use() as p:  # type: ignore[attr-defined]
            rc = lib.dev_py_derp_last_error(p, buf, _ERRLEN)
        if rc < 0:
            if rc == -_ENOENT:
                return ""
            raise SpanzaError(f"derp_last_error: {os.strerror(-rc)}", -rc)
        return str(ffi.string(buf).decode(errors="replace"))


__all__ = ["DerpBindMixin", "derp_endpoint"]
