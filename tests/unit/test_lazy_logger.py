"""spanza._log's LazyLogger: `logging` is imported only once a record
could be shown, and records behave as the real logger's."""

from __future__ import annotations

import logging
import subprocess
import sys

from spanza import _log


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)


def test_records_below_warning_do_not_import_logging():
    p = _run(
        "import sys\nfrom spanza._log import get_logger\nlog = get_logger('spanza.t')\n"
        "log.debug('d %s', 1); log.info('i')\n"
        "print('logging' in sys.modules, log.isEnabledFor(10), log.isEnabledFor(30))"
    )
    assert p.stdout.split() == ["False", "False", "True"]
    assert p.stderr == ""


def test_a_warning_without_configuration_reaches_stderr():
    # As a real logger's: logging's last-resort handler prints it.
    p = _run("from spanza._log import get_logger\nget_logger('spanza.t').warning('careful %s', 42)")
    assert p.stderr == "careful 42\n"


def test_configured_logging_gets_debug_records_with_the_callers_place(caplog):
    caplog.set_level(logging.DEBUG, logger="spanza.t")
    log = _log.get_logger("spanza.t")
    log.debug("hello %d", 5)
    log.log(logging.INFO, "via log")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    recs = [r for r in caplog.records if r.name == "spanza.t"]
    assert [(r.levelno, r.getMessage()) for r in recs] == [(10, "hello 5"), (20, "via log"), (40, "failed")]
    assert {r.funcName for r in recs} == {"test_configured_logging_gets_debug_records_with_the_callers_place"}
    assert recs[2].exc_info is not None and recs[2].exc_info[0] is ValueError


def test_other_attributes_are_the_real_loggers():
    log = _log.get_logger("spanza.t2")
    assert log.getEffectiveLevel() == logging.getLogger("spanza.t2").getEffectiveLevel()
    assert log.name == "spanza.t2"
