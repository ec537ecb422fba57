"""The scripts in benchmarks/ start: their imports of kan_mlip still resolve (no timing is asserted).

``mace_*.py`` scripts run in the MACE environment (.venv-mace) and are checked there:
tests/mace/test_mace_benchmark_scripts.py.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("mace_"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_starts(script):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
