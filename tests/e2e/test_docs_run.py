"""The README's Python quick start, its pytest example and every script
under examples/ run as a new user would run them (a fresh process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py")) if (ROOT / "examples").is_dir() else []


def _blocks(lang: str, section: str | None = None) -> list[str]:
    """The README's `lang` code blocks (of the `## section` only, if given)."""
    readme = ROOT / "README.md"
    if not readme.is_file():
        pytest.skip("README.md is not part of this tree (the `make asan` copy)")
    text = readme.read_text()
    if section is not None:
        parts = re.split(r"^## ", text, flags=re.MULTILINE)
        text = "".join(p for p in parts if p.split("\n", 1)[0].strip() == section)
        assert text, f"README.md has no ## {section} section"
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs a fresh Python process that imports this tree's spanza."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_readme_quick_start_runs_and_prints_what_it_says(tmp_path):
    (quick,) = [b for b in _blocks("python", "Python") if "def test_" not in b]
    script = tmp_path / "quick_start.py"
    script.write_text(quick)
    p = _run([str(script)], tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    # each "# comment" after a print is the output the README promises
    promised = [m.strip() for m in re.findall(r"print\(.*\)\s+#\s*(.*)", quick)]
    assert promised and p.stdout.splitlines() == promised


def test_readme_pytest_example_passes(tmp_path):
    (tests,) = [b for b in _blocks("python", "pytest") if "def test_" in b]
    (tmp_path / "test_readme.py").write_text(tests.replace("    ...\n", "    assert a.mode == 'gateway'\n"))
    p = _run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        tmp_path,
        timeout=300,
    )
    assert p.returncode == 0 and "3 passed" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("script", EXAMPLES, ids=[s.name for s in EXAMPLES])
def test_example_runs(script):
    p = _run([str(script)], ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip(), "an example says what it did"
