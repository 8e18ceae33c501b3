"""lwIP is linked into the extension with hidden visibility: the module must
export nothing but its init function, or a system liblwip loaded in the same
process could bind to our symbols (or we to its) and crash."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import spanza._spanza as ext


@pytest.mark.skipif(not shutil.which("nm"), reason="needs nm (binutils)")
def test_extension_exports_only_its_init_function():
    out = subprocess.run(["nm", "-D", "--defined-only", ext.__file__], capture_output=True, text=True, check=True)
    names = [line.split()[-1] for line in out.stdout.splitlines() if line.strip()]
    assert names and all(n.startswith("PyInit_") for n in names), names
