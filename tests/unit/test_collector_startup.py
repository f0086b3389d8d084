"""What the collector loads before its first line: with its metrics off (the default) it never
imports prometheus_client, whose import was a tenth of a short drain's start-up.
(tests/process/test_monitoring.py runs collectors that serve their metrics.)"""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

_PROBE = """
import sys
import collector.cli, collector.queue, collector.service
loaded = sorted(n for n in sys.modules if n.split(".")[0] == "prometheus_client")
assert not loaded, loaded
import collector.metrics  # what a collector serving its metrics imports, on demand
assert "prometheus_client" in sys.modules
print("ok")
"""


def test_a_collector_with_its_metrics_off_does_not_import_prometheus_client() -> None:
    done = subprocess.run(  # the exit status is asserted below
        [sys.executable, "-c", _PROBE], check=False, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
