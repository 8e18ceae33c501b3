"""The README's Python quick start, its pytest example and every script
under examples/ run as a new user would run them (a fresh process)."""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT, run_python

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


def test_readme_quick_start_runs_and_prints_what_it_says(tmp_path):
    (quick,) = [b for b in _blocks("python", "Python") if "def test_" not in b]
    script = tmp_path / "quick_start.py"
    script.write_text(quick)
    p = run_python(str(script), cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    # each "# comment" after a print is the output the README promises
    promised = [m.strip() for m in re.findall(r"print\(.*\)\s+#\s*(.*)", quick)]
    assert promised and p.stdout.splitlines() == promised


def test_readme_pytest_example_passes(tmp_path):
    (tests,) = [b for b in _blocks("python", "pytest") if "def test_" in b]
    (tmp_path / "test_readme.py").write_text(tests.replace("    ...\n", "    assert a.mode == 'gateway'\n"))
    p = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path), cwd=tmp_path, timeout=300)
    assert p.returncode == 0 and "3 passed" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("script", EXAMPLES, ids=[s.name for s in EXAMPLES])
def test_example_runs(script):
    p = run_python(str(script))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip(), "an example says what it did"
