"""cffi build script: the extension ``spanza._spanza``.

The C library (``csrc/``) is compiled by the Makefile into a static archive
with strict warnings and ``-fvisibility=hidden``; this script only declares
the Python-visible API, which each module keeps in its ``*_py.h`` headers,
and links the archive.
"""

from __future__ import annotations

import glob
import os
import re
import sys

from cffi import FFI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
LIBDIR = os.path.abspath(os.environ.get("SPANZA_LIBDIR", os.path.join(ROOT, "build", "release")))


def py_headers() -> list[str]:
    """Every module's ``*_py.h``, a module's own before its subdirectories'
    (``derp/derp_py.h`` declares what ``derp/client/`` uses)."""
    found = glob.glob(os.path.join(CSRC, "**", "*_py.h"), recursive=True)
    return sorted(found, key=lambda p: (os.path.dirname(p), os.path.basename(p)))


def cdef_text(path: str) -> str:
    """A header as cffi's parser takes it: no preprocessor lines except
    plain integer #defines, which cffi understands."""
    out = []
    for line in open(path, encoding="utf-8"):
        s = line.strip()
        if s.startswith("#"):
            if re.match(r"#define\s+\w+\s+(-?\d+|0x[0-9a-fA-F]+)\s*$", s):
                out.append(line)
            continue
        out.append(line)
    return "".join(out)


ffibuilder = FFI()
ffibuilder.cdef("\n".join(cdef_text(h) for h in py_headers()))
ffibuilder.set_source(
    "spanza._spanza",
    "\n".join(f'#include "{os.path.relpath(h, CSRC)}"' for h in py_headers()),
    include_dirs=[CSRC],
    extra_objects=[os.path.join(LIBDIR, "libspanza.a")],
    libraries=["ssl", "crypto", "sodium", "pthread"],
    extra_compile_args=["-fvisibility=hidden"]
    + (["-fsanitize=address,undefined"] if os.environ.get("SPANZA_SANITIZE") else []),
    extra_link_args=(["-fsanitize=address,undefined"] if os.environ.get("SPANZA_SANITIZE") else []),
)

if __name__ == "__main__":
    outdir = sys.argv[1] if len(sys.argv) > 1 else ROOT
    ffibuilder.compile(tmpdir=outdir, verbose=False)
