"""The MACE benchmark scripts (benchmarks/mace_*.py) start in the MACE environment (no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mace.modules", reason="mace-torch is not installed here (MACE-KAN runs in .venv-mace: make test-mace)")

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("mace_*.py"))


def test_there_are_mace_benchmark_scripts():
    assert SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_mace_benchmark_script_starts(script):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
