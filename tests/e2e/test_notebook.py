"""examples/packet_flow.ipynb runs clean, headless (nbclient), and its
diagram cells produce images. Outputs are not committed."""

from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(ROOT, "examples", "packet_flow.ipynb")

for _mod in ("nbclient", "nbformat", "ipykernel", "matplotlib", "pandas"):
    pytest.importorskip(_mod, reason="the notebook extras (requirements-dev.txt) are not installed")


def test_packet_flow_notebook_runs_and_draws(monkeypatch, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    # the kernel imports this tree's spanza
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs are not committed"
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outs if o.output_type == "error"]
    images = [o for o in outs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the two sequence diagrams
    text = "".join(o.get("text", "") for o in outs)
    assert "200" in text and "derp-queued" in text and "relay-in" in text
    assert "tshark -r" in text
