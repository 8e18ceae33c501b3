"""Public names a module loads on first use: its `__getattr__` and `__dir__`.

For names whose own modules import what most uses of the module do not
need (dataclasses, typing, http.client: the cold start of `spanza demo`).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def lazy_names(module: str, where: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `module` (its ``__name__``): each name
    of `where` comes from the module named beside it, imported on first
    access; ``dir()`` lists them all along (tab completion, help())."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        import importlib

        return getattr(importlib.import_module(where[name]), name)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module]), *where})

    return __getattr__, __dir__
