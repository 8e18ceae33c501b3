"""The compiled extension, with a message that says how to build it."""

try:
    from spanza._spanza import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError("spanza's C extension is not built: run `make` in the source tree (or `pip install .`)") from exc

__all__ = ["ffi", "lib"]
