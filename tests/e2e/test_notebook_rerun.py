"""examples/rerun_and_interrupt.ipynb as a new user runs it, headless
(nbclient): the set-up cell runs twice in one kernel without error or leak,
and a cell blocked in ``Device.read_packet(timeout=None)`` is interrupted
through the kernel manager (the notebook's ■ button), ends with
KeyboardInterrupt, and the same objects keep working in the next cells."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(ROOT, "examples", "rerun_and_interrupt.ipynb")

for _mod in ("nbclient", "nbformat", "ipykernel", "jupyter_client"):
    pytest.importorskip(_mod, reason="the notebook extras (requirements-dev.txt) are not installed")


# Run in the kernel before the waiting cell (not part of the notebook): a
# daemon thread that touches {flag} once the thread that runs cells has
# Device.read_packet on its stack (the kernel imports this tree's tests too).
WATCH = """
import pathlib, sys, threading
from tests.support import wait_for

def _in_read_packet(cells=threading.get_ident()):
    f = sys._current_frames().get(cells)
    while f is not None and not (f.f_code.co_name == "read_packet" and f.f_code.co_filename.endswith("device.py")):
        f = f.f_back
    return f is not None

def _watch():
    wait_for(_in_read_packet, timeout=60, what="read_packet", interval=0.005)
    pathlib.Path({flag!r}).touch()

threading.Thread(target=_watch, daemon=True).start()
"""


def _text(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _errors(cell: Any) -> list[Any]:
    return [o for o in cell.outputs if o.output_type == "error"]


def _run_interrupted(client: Any, km: Any, cell: Any, index: int, flag: Path) -> None:
    """Runs `cell` (tagged raises-exception: its error is an output) and
    interrupts the kernel through its manager, as the notebook's ■ button
    does, once the thread that runs cells is inside Device.read_packet."""
    from nbformat.v4 import new_code_cell

    client.execute_cell(new_code_cell(WATCH.format(flag=str(flag))), index)
    inside = threading.Event()

    def interrupt() -> None:
        try:
            wait_for(flag.exists, timeout=30, what="the cell to wait in read_packet")
            inside.set()
        finally:
            asyncio.run(km.interrupt_kernel())  # the cell ends either way (SIGINT to the kernel)

    t = threading.Thread(target=interrupt, daemon=True)
    t.start()
    try:
        client.execute_cell(cell, index)
    finally:
        t.join(35)
    assert inside.is_set(), "the cell never waited in read_packet"


def test_setup_cell_runs_twice_and_a_wait_is_interrupted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs are not committed"
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    tagged = {t: (i, c) for i, c in code for t in c.metadata.get("tags", [])}
    km = AsyncKernelManager(kernel_name="python3")
    client = NotebookClient(
        nb, km=km, timeout=60, shutdown_kernel="immediate", resources={"metadata": {"path": str(tmp_path)}}
    )
    with client.setup_kernel():
        setup_at = tagged["setup"][0]
        wait_at = tagged["wait"][0]
        for i, cell in code:
            if i == setup_at:
                client.execute_cell(cell, i)
                client.execute_cell(cell, i)  # again, in the same kernel
                assert not _errors(cell)
            elif i == wait_at:
                _run_interrupted(client, km, cell, i, tmp_path / "in_read_packet")
                (err,) = _errors(cell)
                assert err.ename == "KeyboardInterrupt"
                assert any("read_packet" in line for line in err.traceback), "interrupted inside read_packet"
            else:
                client.execute_cell(cell, i)
                assert not _errors(cell), _errors(cell)
    # the check cell asserts that both runs left as many threads and fds
    assert "set-up ran 2 times" in _text(tagged["check"][1])
    for tag, data in (("use", "b'hello tun'"), ("after", "b'after the interrupt'")):
        out = _text(tagged[tag][1])
        assert "(200, b'hello from a\\n')" in out, out
        assert re.search(r"10\.77\.\d+\.1:\d+ -> 10\.77\.\d+\.50:7 " + re.escape(data), out), out
