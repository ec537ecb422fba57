"""nequip-train on the example configs; the trained KAN model runs energy-conserving NVE in LAMMPS."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write

from kan_mlip.bench.lammps import run_lammps, thermo_table
from kan_mlip.ase import KANCalculator
from kan_mlip.compiler import deploy, load_deployed
from kan_mlip.data import make_ag_data
from kan_mlip.evaluation import errors, load_checkpoint_model, predict
from kan_mlip.lmp_plugin import PLUGIN_DIR
from kan_mlip.models import ScalarKAN
from kan_mlip.resources import lammps_input
from kan_mlip.training import read_epoch_times, read_val_metrics, run_nequip_train

CONFIGS = ["allegro_mlp", "allegro_kan_readout"]


@pytest.fixture(scope="module")
def ag_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ag.extxyz"
    write(path, make_ag_data(n_frames=60, seed=0, equilibration_steps=100, progress=False), format="extxyz")
    return path


@pytest.fixture(scope="module")
def trained(ag_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        config: run_nequip_train(config, root / config, [f"data_path={ag_data}", "max_epochs=3",
                                                         "trainer.enable_progress_bar=false"], quiet=True)
        for config in CONFIGS + ["nequip_kan_readout_bspline"]
    }


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_short_training_lowers_validation_force_mae(config, trained, ag_data):
    run = trained[config]
    val = read_val_metrics(run)
    before, after = val[0]["forces_mae"], val[-1]["forces_mae"]  # run: [val, train, val]
    assert after < 0.7 * before, (config, before, after)
    times = read_epoch_times(run)  # the configs' EpochTimer callback
    assert len(times) == 3 and all(t > 0 for t in times)

    # the checkpoint reloads into the same architecture and its errors are those of a trained model
    model = load_checkpoint_model(run / "best.ckpt")
    assert any(isinstance(m, ScalarKAN) for m in model.modules()) == (config == "allegro_kan_readout")
    frames = read(ag_data, index=":10")
    err = errors(frames, predict(model, frames))
    assert err["force_mae_meV_per_A"] < 1e3 * before


@pytest.mark.slow
@pytest.mark.skipif(not (PLUGIN_DIR / "allegro_kan_plugin.so").exists(), reason="plugin not built: make plugin")
def test_trained_kan_model_conserves_energy_in_lammps_nve(trained, tmp_path):
    pair = tmp_path / "pair.pt"
    deploy(trained["allegro_kan_readout"] / "best.ckpt", pair, log=lambda *_: None)
    out = run_lammps(lammps_input("in.ag_nve"), {"model": pair, "steps": 2000, "temp": 300}, cwd=tmp_path)
    rows = thermo_table(out)
    etot = np.array([r["TotEng"] for r in rows])
    natoms = 71
    drift = abs(etot[-1] - etot[0]) / natoms
    spread = (etot.max() - etot.min()) / natoms
    print(f"NVE 2000 steps, 1 fs: total-energy drift {1e3 * drift:.4f} meV/atom, max spread {1e3 * spread:.4f} meV/atom")
    assert len(rows) == 21 and np.ptp([r["Temp"] for r in rows]) > 1  # atoms really moved
    assert drift < 1e-3 and spread < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("config, blocks", [("allegro_kan_readout", {"readout": "gaussian"}),
                                            ("nequip_kan_readout_bspline", {"readout": "bspline"})])
def test_kan_deploy_accepts_checkpoint_and_nequip_package(config, blocks, trained, ag_data, tmp_path):
    run = trained[config]
    package = tmp_path / "model.nequip.zip"
    exe = Path(sys.executable).parent
    subprocess.run([str(exe / "nequip-package"), "build", str(run / "best.ckpt"), str(package)], check=True, capture_output=True)
    energies = {}
    for source in (run / "best.ckpt", package):
        pair = tmp_path / f"{source.name}.pt"
        proc = subprocess.run([str(exe / "kan-deploy"), str(source), "-o", str(pair)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "check:" in proc.stdout and "OK" in proc.stdout
        assert load_deployed(pair)[1]["kan_blocks"] == blocks
        atoms = read(ag_data, index=7)
        atoms.calc = KANCalculator(pair)
        energies[source.suffix] = atoms.get_potential_energy()
    assert abs(energies[".ckpt"] - energies[".zip"]) < 1e-10
    # and equal to nequip's own model from the checkpoint (cell shifts, autograd forces)
    assert abs(predict(load_checkpoint_model(run / "best.ckpt"), [atoms])["energy"][0] - energies[".ckpt"]) < 1e-8
