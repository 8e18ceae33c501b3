"""Build hook: the C library is compiled by `make lib`, then cffi links it."""

import subprocess
import os

from setuptools import setup

here = os.path.dirname(os.path.abspath(__file__))
if not os.environ.get("SPANZA_SKIP_MAKE"):
    subprocess.run(["make", "-C", here, "lib"], check=True)

setup(cffi_modules=["spanza/_build.py:ffibuilder"])
