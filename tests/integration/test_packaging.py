"""Packaging as Python users expect: `python -m build` in a clean copy
gives an sdist with everything to build and an abi3 wheel; the sdist
installs into a fresh venv, where `import spanza` and `spanza demo` work;
nothing is written into the source tree; missing headers name the Debian
packages."""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

# SPANZA_ROOT: the checkout (make asan runs the tests from a copy without setup.py and .cache/).
ROOT = Path(os.environ.get("SPANZA_ROOT") or Path(__file__).resolve().parents[2])
LWIP_ORIG = ROOT / ".cache" / "lwip" / "download" / "lwip_2.1.3+dfsg1.orig.tar.xz"


def _setup_module():
    spec = importlib.util.spec_from_file_location("spanza_setup", ROOT / "setup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_missing_headers_name_the_debian_packages(tmp_path, monkeypatch):
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'fatal error: sodium.h: No such file or directory' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    with pytest.raises(SystemExit) as info:
        _setup_module().check_build_tools()
    msg = str(info.value)
    assert "libsodium and OpenSSL development headers are missing" in msg and "sodium.h" in msg
    assert "apt-get install build-essential libsodium-dev libssl-dev" in msg


def _snapshot(tree: Path) -> set[str]:
    return {str(p.relative_to(tree)) for p in tree.rglob("*")}


def _run(
    *args: object, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin"


@pytest.mark.slow
def test_build_sdist_and_wheel_then_install_the_sdist(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".cache",
            "build",
            "dist",
            "__pycache__",
            "*.so",
            "*.egg-info",
            ".git",
            ".pytest_cache",
        ),
    )
    before = _snapshot(src)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    if LWIP_ORIG.is_file():
        env["SPANZA_LWIP_ORIG"] = str(LWIP_ORIG)  # no second download of lwIP's source
    bv = _venv(tmp_path / "buildenv")
    if subprocess.run([bv / "pip", "install", "-q", "build"], env=env, timeout=300, check=False).returncode != 0:
        pytest.skip("cannot install 'build' from PyPI")
    dist = tmp_path / "dist"
    _run(bv / "python", "-m", "build", "--outdir", dist, src, env=env)
    (sdist,) = glob.glob(str(dist / "spanza-*.tar.gz"))
    (wheel,) = glob.glob(str(dist / "spanza-*.whl"))
    assert wheel.endswith("-cp310-abi3-linux_x86_64.whl")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for need in (
        "Makefile",
        "mk/lwip.mk",
        "scripts/fetch-lwip.sh",
        "csrc/netstack/lwipopts.h",
        "csrc/derp/client/client.c",
        "spanza/_build.py",
        "setup.py",
        "bin/spanza",
        # the lwIP patches and the pinned hash (fetch-lwip.sh refuses a tree without them)
        *(f"scripts/lwip-patches/{p.name}" for p in (ROOT / "scripts" / "lwip-patches").iterdir()),
    ):
        assert need in names, need
    assert not any(n.endswith((".so", ".o", ".a")) for n in names)

    iv = _venv(tmp_path / "installenv")
    r = _run(iv / "pip", "install", "-q", sdist, env=env)
    assert "apt-get install" not in r.stdout + r.stderr  # never the system installer
    r = _run(
        iv / "python",
        "-c",
        "import spanza, spanza._spanza as m; print(m.__file__)",
        cwd=tmp_path,
        timeout=60,
    )
    assert r.stdout.strip().endswith("_spanza.abi3.so"), r.stdout
    r = _run(iv / "spanza", "demo", cwd=tmp_path, timeout=120)
    assert "ok: response in" in r.stdout, r.stdout + r.stderr
    assert _snapshot(src) == before  # nothing built or cached in the source tree


def test_lwip_source_that_cannot_be_fetched_says_what_to_do(tmp_path):
    """No apt-get here (another distribution): one message naming the
    variable that points at the tarball, and no attempt at anything else."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in (
        "bash",
        "dirname",
        "mkdir",
        "sha256sum",
        "cat",
        "rm",
        "tar",
        "touch",
        "cp",
    ):
        path = shutil.which(tool)
        if path:
            (tools / tool).symlink_to(path)
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "fetch-lwip.sh"), str(tmp_path / "cache")],
        env={"PATH": str(tools)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1
    assert "cannot fetch Debian's lwip source package here" in r.stderr
    assert "SPANZA_LWIP_ORIG=/path/to/lwip_2.1.3+dfsg1.orig.tar.xz" in r.stderr
