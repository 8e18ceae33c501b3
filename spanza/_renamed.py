"""Arguments that were renamed: the old name still works, with a DeprecationWarning."""

from __future__ import annotations

import warnings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")


def renamed(where: str, new: str, value: T | None, old: str, old_value: T | None) -> T | None:
    """`value`, or `old_value` given under the argument's old name (warned)."""
    if old_value is None:
        return value
    warnings.warn(f"{where}({old}=...) is deprecated: call it {new}", DeprecationWarning, stacklevel=3)
    if value is not None:
        raise TypeError(f"{where}: give {new} or {old} (its old name), not both")
    return old_value
