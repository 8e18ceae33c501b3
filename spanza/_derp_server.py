"""The DERP server: Tailscale's relay protocol, served from C on a runtime loop.

Import it from `spanza.derp`."""

from __future__ import annotations

import errno as _errno
import gc
import os
from collections.abc import Sequence

from spanza._addr import ip_address
from spanza._ffi import ffi, lib
from spanza._handle import Handle
from spanza._log import get_logger
from spanza.errors import ConfigError, error
from spanza.keys import PrivateKey, PublicKey, load_key_file, private_key_bytes
from spanza.runtime import Runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = get_logger("spanza.derp")

_ERRLEN = 512
_TIMER_FIELDS = (
    "keepalive_ms",
    "keepalive_jitter_ms",
    "handshake_timeout_ms",
    "http_timeout_ms",
    "write_timeout_ms",
    "mesh_write_timeout_ms",
    "mesh_retry_ms",
    "queue_depth",
    "not_here_interval_ms",
)


def _raise(rc: int, err: Any, what: str) -> None:
    msg = ffi.string(err).decode(errors="replace") if err is not None else ""
    raise error(-rc, f"{what}: {msg or os.strerror(-rc)}")


def _free_server(ptr: Any, runtime: Runtime | None, how: list[Any] | None = None) -> None:
    """A server's release: the server (gracefully, or as ``how[0]`` says:
    `DerpServer.kill` sets it to derp_server_kill), then the runtime it owns."""
    (how[0] if how else lib.derp_server_free)(ptr)
    if runtime is not None:
        runtime.close()


def _mesh_key_bytes(value: bytes | str) -> bytes:
    """A mesh key (a shared secret, not an X25519 key): 32 bytes or 64 hex digits."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
    elif isinstance(value, str):
        try:
            b = bytes.fromhex(value.strip())
        except ValueError:
            raise ConfigError("mesh_key: want 64 hex digits (as in derper's mesh key file)") from None
    else:
        raise ConfigError(f"mesh_key: want bytes or 64 hex digits, got {type(value).__name__}")
    if len(b) != 32:
        raise ConfigError(f"mesh_key: want 32 bytes (64 hex digits), got {len(b)} bytes")
    return b


def generate_node_key() -> tuple[bytes, bytes]:
    """A fresh clamped Curve25519 node key: (private, public)."""
    key = PrivateKey.generate()
    return key.raw, key.public_key.raw


def node_public_key(private_key: bytes | str | PrivateKey) -> bytes:
    """The public key of a node private key (X25519 with the base point)."""
    return PrivateKey(private_key_bytes(private_key, "private key")).public_key.raw


def load_derper_key(path: str | os.PathLike[str], create: bool = True) -> bytes:
    """The private key in derper's config file ({"PrivateKey": "privkey:..."}),
    creating the file (mode 0600) with a fresh key when it is missing
    (spanza.keys.load_key_file, as raw bytes)."""
    return load_key_file(path, create=create).raw


def load_mesh_key(path: str | os.PathLike[str]) -> bytes:
    """A mesh key file as derper reads it: 64 hex digits, whitespace trimmed."""
    key = ffi.new("uint8_t[32]")
    err = ffi.new("char[]", _ERRLEN)
    rc = lib.derp_server_load_mesh_key(os.fsencode(path), key, err, _ERRLEN)
    if rc < 0:
        _raise(rc, err, "mesh key")
    return bytes(key)


def write_self_signed_cert(hostname: str, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
    """Writes a self-signed P-256 certificate (1 year) for a DNS name or IP."""
    err = ffi.new("char[]", _ERRLEN)
    rc = lib.derp_server_write_self_signed(
        hostname.encode(), os.fsencode(cert_path), os.fsencode(key_path), err, _ERRLEN
    )
    if rc < 0:
        _raise(rc, err, "self-signed certificate")


def _url_host(host: str) -> str:
    try:
        if ip_address(host)[0] == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


class DerpServer(Handle):
    """A DERP relay server (Tailscale's protocol) running on its own runtime.

    Plain HTTP by default; ``tls=True`` serves TLS with ``cert_file`` and
    ``key_file``, or with a self-signed certificate it makes for ``hostname``
    (``ca_cert_pem`` / ``cert_sha256`` let clients trust it).

    ``key_file_config`` is derper's config file holding the server's private
    key (created when missing); without it the key is ``private_key`` or a
    fresh one. ``mesh_key`` (32 bytes or 64 hex digits) admits mesh peers;
    ``mesh_with`` lists peer servers ("host:port", "https://host:port/derp",
    "http://..." for plain ones, or derper's "host/dialhost") this server
    keeps mesh links to. ``allowlist_file`` admits only the node keys it
    lists (one per line; mesh-key holders are always admitted);
    ``rate_limit`` caps each client's receive rate in bytes per second by
    not reading its socket (nothing is dropped).

    Timers and queue sizes (``keepalive_ms``, ``handshake_timeout_ms``,
    ``write_timeout_ms``, ``queue_depth``, ...) default to the protocol's.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        hostname: str | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        key_file_config: str | os.PathLike[str] | None = None,
        mesh_key: bytes | str | None = None,
        mesh_with: Sequence[str] | str = (),
        allowlist_file: str | os.PathLike[str] | None = None,
        rate_limit: int | None = None,
        runtime: Runtime | None = None,
        *,
        private_key: bytes | str | None = None,
        rate_burst: int | None = None,
        mesh_ca_file: str | os.PathLike[str] | None = None,
        mesh_insecure: bool = False,
        require_sni: bool = False,
        **timers: int,
    ) -> None:
        unknown = set(timers) - set(_TIMER_FIELDS)
        if unknown:
            raise TypeError(f"DerpServer() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {port!r}")
        if (cert_file is None) != (key_file is None):
            raise ConfigError("cert_file and key_file go together")
        if cert_file is not None and not tls:
            raise ConfigError("cert_file/key_file need tls=True")
        if rate_limit is not None and (not isinstance(rate_limit, int) or rate_limit < 0):
            raise ConfigError(f"rate_limit must be a number of bytes per second >= 0, got {rate_limit!r}")
        if isinstance(mesh_with, str):
            mesh_with = [m for m in mesh_with.split(",") if m.strip()]
        mesh_with = list(mesh_with)
        if mesh_with and mesh_key is None:
            raise ConfigError("mesh_with needs a mesh_key (the same on every server of the region)")
        if key_file_config is not None and private_key is not None:
            raise ConfigError("give either key_file_config or private_key, not both")

        self._keep: list[Any] = []  # cffi buffers referenced by the config during creation
        cfg = ffi.new("struct derp_server_config *")
        cfg.host = self._cstr(host)
        cfg.port = port
        cfg.tls = 1 if tls else 0
        cfg.cert_file = self._cstr(cert_file)
        cfg.key_file = self._cstr(key_file)
        cfg.hostname = self._cstr(hostname)
        cfg.require_sni = 1 if require_sni else 0
        if key_file_config is not None:
            private_key = load_derper_key(key_file_config, create=True)
        if private_key is not None:
            cfg.has_private_key = 1
            ffi.memmove(cfg.private_key, private_key_bytes(private_key), 32)
        if mesh_key is not None:
            cfg.has_mesh_key = 1
            ffi.memmove(cfg.mesh_key, _mesh_key_bytes(mesh_key), 32)
        cfg.mesh_with = self._cstr(",".join(mesh_with) if mesh_with else None)
        cfg.mesh_ca_file = self._cstr(mesh_ca_file)
        cfg.mesh_insecure = 1 if mesh_insecure else 0
        cfg.allowlist_file = self._cstr(allowlist_file)
        cfg.rate_bytes_per_s = rate_limit or 0
        cfg.rate_burst_bytes = rate_burst or 0
        for name, value in timers.items():
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
            setattr(cfg, name, value)

        self._own_runtime = runtime is None
        self.runtime = runtime if runtime is not None else Runtime("derp-server")
        out = ffi.new("derp_server_t **")
        err = ffi.new("char[]", _ERRLEN)
        try:
            rc = lib.derp_server_new(self.runtime.ptr, cfg, out, err, _ERRLEN)
            if rc == -_errno.EADDRINUSE and port:
                # The holder may be a dropped server not yet collected; the
                # config (its strings and keys) is still whole here.
                gc.collect()
                rc = lib.derp_server_new(self.runtime.ptr, cfg, out, err, _ERRLEN)
        finally:
            ffi.memmove(cfg.private_key, b"\0" * 32, 32)
            ffi.memmove(cfg.mesh_key, b"\0" * 32, 32)
            self._keep.clear()
        if rc < 0:
            if self._own_runtime:
                self.runtime.close()
            _raise(rc, err, "DERP server")
        self._ptr = out[0]
        self.host = host
        self.tls = bool(tls)
        self.hostname = hostname
        self.port = int(lib.derp_server_port(self._ptr))
        # The release refers to the C server and the runtime, not to self:
        # a server dropped without close() is freed by the collector.
        ptr, own_rt = self._ptr, self.runtime if self._own_runtime else None
        how: list[Any] = [lib.derp_server_free]
        self._free_how = how
        self._handle_open(lambda: _free_server(ptr, own_rt, how), f"DerpServer {self.url}")
        pub = ffi.new("uint8_t[32]")
        lib.derp_server_public_key(self._ptr, pub)
        self.public_key = PublicKey(bytes(pub))
        self.ca_cert_pem: str | None = self._cert_pem()
        sha = ffi.new("uint8_t[32]")
        self.cert_sha256: str | None = (
            bytes(sha).hex() if tls and lib.derp_server_cert_sha256(self._ptr, sha) == 0 else None
        )
        log.debug("DERP server on %s", self.url)

    def _cstr(self, value: str | os.PathLike[str] | None) -> Any:
        if value is None:
            return ffi.NULL
        b = os.fsencode(value) if not isinstance(value, str) else value.encode()
        buf = ffi.new("char[]", b)
        self._keep.append(buf)
        return buf

    def _cert_pem(self) -> str | None:
        buf = ffi.new("char[]", 16384)
        n = lib.derp_server_cert_pem(self._ptr, buf, 16384)
        return ffi.string(buf).decode() if n > 0 else None

    @property
    def ptr(self) -> Any:
        """The C ``derp_server_t *``."""
        self._check_open()
        return self._ptr

    @property
    def url(self) -> str:
        """http(s)://host:port/derp, as clients dial it."""
        host = self.host
        if self.tls and self.hostname:
            host = self.hostname
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"{'https' if self.tls else 'http'}://{_url_host(host)}:{self.port}/derp"

    @property
    def public_key_hex(self) -> str:
        return self.public_key.hex()

    @property
    def node_key(self) -> str:
        """The server key in Tailscale's text form, nodekey:<hex>."""
        return "nodekey:" + self.public_key.hex()

    @property
    def cert_name(self) -> str | None:
        """DERPNode.CertName pinning this server's certificate (sha256-raw:<hex>)."""
        return f"sha256-raw:{self.cert_sha256}" if self.cert_sha256 else None

    def stats(self) -> dict[str, int]:
        """Counters: clients, packets and bytes relayed, drops by reason, closes by reason."""
        st = ffi.new("struct derp_server_stats *")
        rc = lib.derp_server_stats(self.ptr, st)
        if rc < 0:
            _raise(rc, None, f"{self._label}: stats")
        return {name: int(getattr(st, name)) for name, _ in ffi.typeof("struct derp_server_stats").fields}

    def advance_clock(self, ms: int) -> None:
        """For tests: moves the server's clock forward by ``ms`` milliseconds
        (virtual time, on top of real time) and runs every deadline now due:
        keepalives, handshake and write deadlines, rate-limit resumes, mesh
        retries. Protocol timers are tested this way instead of sleeping."""
        if not isinstance(ms, int) or ms < 0:
            raise ConfigError(f"advance_clock: ms must be an integer >= 0, got {ms!r}")
        rc = lib.derp_server_advance_clock(self.ptr, ms)
        if rc < 0:
            _raise(rc, None, f"{self._label}: advance_clock")

    def close(self) -> None:
        """Closes every connection and the listener (queued frames get one
        last write), and the server's own runtime. Idempotent."""
        super().close()

    def kill(self) -> None:
        """Stops abruptly, as a crash would: every connection is reset (RST),
        nothing queued is written. Restart with ``DerpServer(port=old.port,
        private_key=...)``, as after `close`. Idempotent."""
        if self.closed:
            return
        self._free_how[0] = lib.derp_server_kill
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<DerpServer {self.url} {self.node_key[:16]}…{state}>"

    def _repr_html_(self) -> str:
        from spanza._stats import html_table, readable

        head = {"url": self.url, "server key": self.node_key}
        return html_table(head if self.closed else {**head, **readable(self.stats()).flat()}, title="spanza DerpServer")
