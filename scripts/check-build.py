#!/usr/bin/env python3
"""Checks what the build produced (part of `make lint`):

- the extension exports only its module init (everything else is built
  with -fvisibility=hidden: lwIP's symbols must not meet a system liblwip);
- no two objects of the archive share a name (`ar` keys members by name:
  an incremental update would silently replace one with the other).

    check-build.py ARCHIVE EXTENSION
"""

from __future__ import annotations

import collections
import subprocess
import sys


def main(archive: str, ext: str) -> int:
    errors = []
    members = subprocess.run(["ar", "t", archive], check=True, capture_output=True, text=True).stdout.split()
    dups = sorted(name for name, n in collections.Counter(members).items() if n > 1)
    if dups:
        errors.append(f"{archive}: object names used twice (rename a source file): {', '.join(dups)}")
    out = subprocess.run(["nm", "-D", "--defined-only", ext], check=True, capture_output=True, text=True).stdout
    exported = sorted(line.split()[-1] for line in out.splitlines() if line.split()[-2:-1] in (["T"], ["D"], ["B"]))
    extra = [s for s in exported if not s.startswith("PyInit_")]
    if extra:
        errors.append(f"{ext}: exports more than PyInit_*: {', '.join(extra[:20])}")
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
