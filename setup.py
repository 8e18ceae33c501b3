"""Build hook: `make lib` compiles the C library, then cffi links it.

Under pip / `python -m build` everything is built in setuptools' build
directory, which is moved out of the source tree: the objects, lwIP's
source (fetched by scripts/fetch-lwip.sh) and the archive. No system set-up
runs (NO_DEPS=1: no apt, no .venv); missing headers stop the build with the
Debian packages to install. The repository's own flow (`make ext`, which
sets SPANZA_SKIP_MAKE) builds the archive itself under ./build.

The wheel is tagged abi3 (cffi's modules use Python's limited API), so one
wheel serves every CPython from 3.10 on.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

from setuptools import setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext
from setuptools.command.egg_info import egg_info

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP_MAKE = bool(os.environ.get("SPANZA_SKIP_MAKE"))
DEBIAN_PACKAGES = "build-essential libsodium-dev libssl-dev"
LWIP_ORIG = "lwip_2.1.3+dfsg1.orig.tar.xz"
_HEADER_PROBE = "#include <sodium.h>\n#include <openssl/ssl.h>\n#include <openssl/evp.h>\n"


def _fail(why: str, hint: str = f"on Debian/Ubuntu: apt-get install {DEBIAN_PACKAGES}") -> None:
    sys.exit(f"spanza: cannot build: {why}.\nspanza: {hint}")


def check_build_tools() -> None:
    """One clear message for what the C build needs from the system."""
    cc = os.environ.get("CC", "cc")
    for tool in ("make", cc):
        if shutil.which(tool) is None:
            _fail(f"no {tool!r} on PATH")
    probe = subprocess.run(
        [cc, "-E", "-x", "c", "-", "-o", os.devnull],
        input=_HEADER_PROBE,
        text=True,
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        _fail(
            "the libsodium and OpenSSL development headers are missing "
            f"({probe.stderr.strip().splitlines()[0] if probe.stderr.strip() else cc + ' failed'})"
        )


def make_lib(build_temp: str) -> str:
    """Runs `make lib` with its objects and caches under build_temp; returns
    the directory of libspanza.a."""
    check_build_tools()
    out = os.path.join(build_temp, "spanza-c")
    env = dict(os.environ)
    cached = os.path.join(HERE, ".cache", "lwip", "download", LWIP_ORIG)
    if "SPANZA_LWIP_ORIG" not in env and os.path.isfile(cached):
        env["SPANZA_LWIP_ORIG"] = cached  # a checkout's download: read, never written
    rc = subprocess.run(
        [
            "make",
            "-C",
            HERE,
            "lib",
            f"BUILD_DIR={out}/build",
            f"CACHE_DIR={out}/cache",
            "NO_DEPS=1",
            f"PY={sys.executable}",
        ],
        env=env,
        check=False,
    ).returncode
    if rc != 0:
        _fail(
            "`make lib` failed",
            "the lines above say why (for lwIP's source, see SPANZA_LWIP_ORIG)",
        )
    return os.path.join(out, "build", "release")


def scratch_dir(prefix: str) -> str:
    """A directory outside the source tree, removed when the build ends."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


class OutOfTreeBuild(build):
    """setuptools' build directory, out of the source tree (pip builds in place)."""

    def initialize_options(self) -> None:
        super().initialize_options()
        if not SKIP_MAKE:
            self.build_base = scratch_dir("spanza-build-")


class OutOfTreeEggInfo(egg_info):
    """spanza.egg-info (setuptools' metadata scratch) out of the source tree too."""

    def initialize_options(self) -> None:
        super().initialize_options()
        if not SKIP_MAKE:
            self.egg_base = scratch_dir("spanza-egg-")


class MakeThenBuildExt(build_ext):
    """Builds the C archive first and links the cffi module against it."""

    def run(self) -> None:
        if not SKIP_MAKE:
            lib = os.path.join(make_lib(os.path.abspath(self.build_temp)), "libspanza.a")
            for ext in self.extensions:
                ext.extra_objects = [lib if o.endswith("libspanza.a") else o for o in ext.extra_objects]
        super().run()


if __name__ == "__main__":  # setuptools runs this file as __main__; tests import its helpers
    setup(
        cffi_modules=["spanza/_build.py:ffibuilder"],
        cmdclass={
            "build": OutOfTreeBuild,
            "build_ext": MakeThenBuildExt,
            "egg_info": OutOfTreeEggInfo,
        },
        options={"bdist_wheel": {"py_limited_api": "cp310"}},
    )
