"""``kan-mlip mace-train``: MACE's own training loop (mace_run_train) on a MACE-KAN, float64, on GAP-17 carbon.

A few epochs lower the validation force error, the written ``<name>.model`` holds the KAN readouts and
loads in MACECalculator, and bad KAN options are refused naming the option.
"""

import gzip
import io
import re
from pathlib import Path

import pytest

pytest.importorskip("mace.modules", reason="mace-torch is not installed here (MACE-KAN runs in .venv-mace: make test-mace)")

import numpy as np  # noqa: E402
from ase.io import read, write  # noqa: E402

from kan_mlip.cli import main as kan_mlip  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CARBON = ROOT.parent / "shared" / "data" / "carbon" / "carbon_gap17_test450.extxyz.gz"


def labelled(frames):
    """Frames with MACE's default label keys (REF_energy, REF_forces)."""
    out = []
    for a in frames:
        b = a.copy()
        b.info = {"REF_energy": a.get_potential_energy()}
        b.arrays["REF_forces"] = a.get_forces()
        out.append(b)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    if not CARBON.exists():
        pytest.skip(f"{CARBON} not found (../shared/data)")
    with gzip.open(CARBON, "rt") as fh:
        frames = read(io.StringIO(fh.read()), index=":", format="extxyz")
    small = [a for a in frames if len(a) <= 64]
    order = np.random.default_rng(0).permutation(len(small))
    workdir = tmp_path_factory.mktemp("mace_train")
    write(workdir / "train.xyz", labelled([small[i] for i in order[:24]]))
    write(workdir / "valid.xyz", labelled([small[i] for i in order[24:36]]))
    return workdir


def mace_args(workdir, name, *extra):
    return ["mace-train", "--name", name, "--train_file", str(workdir / "train.xyz"),
            "--valid_file", str(workdir / "valid.xyz"), "--E0s", "average", "--model", "MACE",
            "--hidden_irreps", "8x0e+8x1o", "--r_max", "4.0", "--max_num_epochs", "4", "--batch_size", "4",
            "--device", "cpu", "--default_dtype", "float64", "--seed", "1", "--energy_key", "REF_energy",
            "--forces_key", "REF_forces", "--work_dir", str(workdir / name), *extra]


def validation_rmse_f(log: str):
    """(initial, last epoch) validation force RMSE, meV/Å, from MACE's log."""
    values = [float(v) for v in re.findall(r"RMSE_F=\s*([0-9.]+) meV / A", log)]
    return values[0], values[-1]


def test_a_few_epochs_lower_the_validation_force_error_and_write_a_mace_model(data, monkeypatch):
    import torch
    from mace.calculators import MACECalculator

    from kan_mlip.mace import KANNonLinearReadoutBlock, KANReadoutBlock

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    torch.set_num_threads(1)
    assert kan_mlip(mace_args(data, "kan", "--kan_placement", "all", "--kan_basis", "bspline")) == 0
    log = next((data / "kan" / "logs").glob("*.log")).read_text()
    assert "KAN readouts (all, bspline)" in log
    initial, last = validation_rmse_f(log)
    assert last < 0.9 * initial, (initial, last)

    model_file = data / "kan" / "kan.model"
    model = torch.load(model_file, weights_only=False)
    assert [type(r) for r in model.readouts] == [KANReadoutBlock, KANNonLinearReadoutBlock]
    atoms = read(data / "valid.xyz", index=0)
    atoms.calc = MACECalculator(model_paths=str(model_file), device="cpu", default_dtype="float64")
    forces = atoms.get_forces()
    assert np.isfinite(forces).all() and np.abs(forces).max() > 0


@pytest.mark.parametrize("option, value, message", [
    ("--kan_basis", "chebyshev", "--kan_basis"),
    ("--kan_hidden", "8,x", "--kan_hidden must be comma-separated integers"),
    ("--kan_grid_size", "0", "--kan_grid_size must be positive"),
])
def test_bad_kan_options_are_refused_naming_the_option(data, option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        kan_mlip(mace_args(data, "bad", option, value))
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (data / "bad").exists()
