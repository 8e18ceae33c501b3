"""docs/ARCHITECTURE.md names files and functions: they must still exist.

Every path in backticks must exist; in the hop tables (rows of four
columns: number, hop, file, function) the function must be defined in the
file of its row; every other `name()` in backticks must be defined
somewhere under csrc/ or spanza/."""

from __future__ import annotations

import os
import re
from pathlib import Path

# SPANZA_ROOT: the checkout (make asan runs the tests from a copy without csrc/ and docs/).
ROOT = Path(os.environ.get("SPANZA_ROOT") or Path(__file__).resolve().parents[2])
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PATH_RE = re.compile(r"`((?:csrc|spanza|tests|bench|mk|scripts|docs)/[^`\s]*)`")
FUNC_RE = re.compile(r"`([A-Za-z_]\w*)\(\)`")
ROW_RE = re.compile(r"^\|\s*[^|]+\|[^|]+\|\s*`([^`]+)`\s*\|\s*`(\w+)\(\)`\s*\|\s*$")


def _defines(text: str, name: str) -> bool:
    # A definition (C: at column 0, after its type; Python: def) or a
    # function-like macro, not just a call.
    n = re.escape(name)
    return re.search(rf"^[A-Za-z_][\w \t\*]*\b{n}\s*\(|^\s*def {n}\(|#define\s+{n}\(", text, re.M) is not None


def _sources() -> list[Path]:
    return [p for d in ("csrc", "spanza") for p in (ROOT / d).rglob("*") if p.suffix in (".c", ".h", ".py")]


def test_paths_exist() -> None:
    named = {p for p in PATH_RE.findall(DOC.read_text()) if "<" not in p and "*" not in p}
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert not missing, f"docs/ARCHITECTURE.md names paths that no longer exist: {missing}"


def test_hop_table_functions_are_defined_in_their_files() -> None:
    rows = [ROW_RE.match(line) for line in DOC.read_text().splitlines()]
    rows = [m for m in rows if m]
    assert len(rows) >= 25, "the hop tables went missing"
    wrong = [
        f"{path}: {fn}()" for path, fn in (m.groups() for m in rows) if not _defines((ROOT / path).read_text(), fn)
    ]
    assert not wrong, f"hop table rows whose function is not defined in their file: {wrong}"


def test_other_functions_exist() -> None:
    text = DOC.read_text()
    names = set(FUNC_RE.findall(text))
    corpus = "\n".join(p.read_text(errors="replace") for p in _sources())
    missing = sorted(n for n in names if not _defines(corpus, n))
    assert not missing, f"docs/ARCHITECTURE.md names functions that no longer exist: {missing}"
