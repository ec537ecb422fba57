"""Bad inputs a new user hits give a clear error before any work, never a traceback, NaN or lost file:
kan-deploy's output path, kan-mlip study's configurations, the ASE calculator's structures."""

import importlib
import os
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from kan_mlip.ase import KANCalculator
from kan_mlip.cli import main as kan_mlip_main
from kan_mlip.compiler.cli import main as kan_deploy
from kan_mlip.compiler.deploy import METADATA_KEYS, load_deployed
from kan_mlip.models.io import build_model, save_model

deploy_module = importlib.import_module("kan_mlip.compiler.deploy")  # the package's `deploy` is the function

CONFIG = {
    "_target_": "kan_mlip.models.KANAllegroModel", "seed": 3, "model_dtype": "float64", "type_names": ["Ag"],
    "r_max": 4.5, "l_max": 1, "num_layers": 1, "num_scalar_features": 8, "num_tensor_features": 4,
    "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": 8},
    "scalar_embed_mlp_hidden_layers_width": 8, "allegro_mlp_hidden_layers_width": 8, "readout_mlp_hidden_layers_width": 8,
    "avg_num_neighbors": 30.0, "per_type_energy_shifts": {"Ag": 0.03}, "per_type_energy_scales": {"Ag": 0.5},
    "kan_placement": "readout", "kan_basis": "gaussian",
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pth"
    return save_model(path, CONFIG, build_model(CONFIG))


@pytest.fixture(scope="module")
def pair(model_file):
    out = model_file.with_name("pair.pt")
    assert kan_deploy([str(model_file), "-o", str(out)]) == 0
    return out


@pytest.fixture
def no_compile(monkeypatch):
    """kan-deploy must refuse before it loads the model: loading it fails the test."""
    def fail(*_):
        raise AssertionError("kan-deploy loaded the model before checking its output path")
    monkeypatch.setattr(deploy_module, "load_trained_model", fail)


def _temp_files(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---- kan-deploy's output ----

@pytest.mark.parametrize("trailing_slash", [False, True])
def test_kan_deploy_refuses_a_directory_as_output(trailing_slash, model_file, tmp_path, no_compile, capsys):
    out = tmp_path / "models"
    out.mkdir()
    assert kan_deploy([str(model_file), "-o", str(out) + ("/" if trailing_slash else "")]) == 2
    err = capsys.readouterr().err
    assert "kan-deploy: error:" in err and "is a directory" in err and str(out / "pair.pt") in err
    assert list(out.iterdir()) == []


@contextmanager
def _unwritable(folder: Path):
    """``folder`` without write access for this process: by its mode, and for root, whom modes do not stop,
    by acting as user nobody (effective uid) meanwhile."""
    folder.chmod(0o555)
    root = os.geteuid() == 0
    if root:
        os.seteuid(65534)
    try:
        yield
    finally:
        if root:
            os.seteuid(0)
        folder.chmod(0o755)


def test_kan_deploy_refuses_an_unwritable_folder_before_the_compile(model_file, no_compile, capsys):
    base = Path(tempfile.mkdtemp())  # not under pytest's folders: those are closed to other users
    try:
        base.chmod(0o755)
        readonly = base / "readonly"
        readonly.mkdir()
        with _unwritable(readonly):
            rc = kan_deploy([str(model_file), "-o", str(readonly / "pair.pt")])
        err = capsys.readouterr().err
        assert rc == 2 and f"cannot write {readonly / 'pair.pt'}" in err and "Permission denied" in err
        assert list(readonly.iterdir()) == []
    finally:
        for p in sorted(base.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        base.rmdir()


@pytest.mark.parametrize("spelling", ["same path", "another spelling", "symlink", "hardlink"])
def test_kan_deploy_never_overwrites_its_source(spelling, model_file, tmp_path, no_compile, capsys):
    source = tmp_path / "model.pth"
    source.write_bytes(model_file.read_bytes())
    out = {"same path": source, "another spelling": tmp_path / ".." / tmp_path.name / "model.pth",
           "symlink": tmp_path / "link.pt", "hardlink": tmp_path / "hard.pt"}[spelling]
    if spelling == "symlink":
        out.symlink_to(source)
    if spelling == "hardlink":
        os.link(source, out)
    assert kan_deploy([str(source), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is the model being deployed" in err and "would be overwritten" in err
    assert source.read_bytes() == model_file.read_bytes()
    assert _temp_files(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_deployed_file_mode_follows_the_umask(umask, model_file, tmp_path):
    old = os.umask(umask)
    try:
        assert kan_deploy([str(model_file), "-o", str(tmp_path / "new" / "pair.pt")]) == 0
    finally:
        os.umask(old)
    out = tmp_path / "new" / "pair.pt"
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # 0644 under umask 022: the LAMMPS group can read it
    assert _temp_files(out.parent) == []
    _, meta = load_deployed(out)
    assert tuple(meta) == METADATA_KEYS


def test_a_failed_write_keeps_the_old_output_and_leaves_nothing(model_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pair.pt"
    out.write_bytes(b"the previous deployment")
    fresh = tmp_path / "new" / "sub" / "pair.pt"

    def disk_full(module, path, **kwargs):
        Path(path).write_bytes(b"half a mod")
        raise RuntimeError("no space left on device")

    monkeypatch.setattr(torch.jit, "save", disk_full)
    for target in (out, fresh):
        assert kan_deploy([str(model_file), "-o", str(target)]) == 2
        assert "no space left on device" in capsys.readouterr().err
    assert out.read_bytes() == b"the previous deployment"
    assert _temp_files(tmp_path) == [] and not (tmp_path / "new").exists()  # nor the folders made for it


# ---- kan-mlip study's configurations ----

@pytest.mark.parametrize("config", ["no_such_config", "configs/missing.yaml"])
def test_study_checks_every_configuration_before_training(config, tmp_path, monkeypatch, capsys):
    frames = []
    for k in range(4):
        atoms = bulk("Ag", "fcc", a=4.09, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.get_forces()
        frames.append(atoms)
    write(tmp_path / "d.extxyz", frames, format="extxyz")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "x", "data": "d.extxyz", "validation_frames": 1,
                                                     "configs": ["allegro_mlp", config]}))
    trained = []
    monkeypatch.setattr("kan_mlip.training.run_nequip_train", lambda name, *a, **k: trained.append(name))
    monkeypatch.chdir(tmp_path)
    assert kan_mlip_main(["study", "s.yaml", "-o", "report"]) == 2
    err = capsys.readouterr().err
    assert trained == [] and not (tmp_path / "report" / "report.md").exists()
    if config == "no_such_config":  # the message lists the configurations there are
        assert "no configuration 'no_such_config'" in err and "allegro_kan_readout, " in err and "allegro_mlp" in err
    else:
        assert "config file not found: configs/missing.yaml" in err


# ---- the ASE calculator's structures ----

def _ag2(**kwargs):
    return Atoms("Ag2", positions=[[0, 0, 0], [2.6, 0.3, 0.1]], **kwargs)


@pytest.mark.parametrize("atoms", [
    _ag2(pbc=True),                                                   # no cell at all
    _ag2(cell=[[4, 0, 0], [0, 4, 0], [0, 0, 0]], pbc=True),           # flat: a periodic axis without a vector
    _ag2(cell=[[4, 0, 0], [0, 4, 0], [4, 4, 0]], pbc=True),           # three vectors in a plane
    _ag2(cell=[[0, 0, 0], [0, 4, 0], [0, 0, 4]], pbc=[True, False, False]),
], ids=["zero", "flat", "coplanar", "zero_periodic_axis"])
def test_calculator_refuses_a_periodic_axis_without_a_cell(atoms, pair):
    atoms.calc = KANCalculator(pair)
    with pytest.raises(ValueError, match="zero or degenerate along the periodic axes"):
        atoms.get_potential_energy()


def test_calculator_takes_a_slab_whose_open_axis_has_no_cell_vector(pair):
    slab = bulk("Ag", "fcc", a=4.09, cubic=True).repeat((2, 2, 1))
    slab.rattle(0.05, seed=1)
    slab.cell[2] = 0.0
    slab.pbc = [True, True, False]
    boxed = slab.copy()
    boxed.cell[2] = [0, 0, 30.0]  # the same slab with vacuum along the open axis
    for atoms in (slab, boxed):
        atoms.calc = KANCalculator(pair)
    assert np.isfinite(slab.get_forces()).all()
    assert abs(slab.get_potential_energy() - boxed.get_potential_energy()) < 1e-12
    assert np.abs(slab.get_forces() - boxed.get_forces()).max() < 1e-12


def test_calculator_refuses_empty_atoms(pair):
    atoms = Atoms(cell=[4, 4, 4], pbc=True)
    atoms.calc = KANCalculator(pair)
    with pytest.raises(ValueError, match="has no atoms"):
        atoms.get_potential_energy()


def test_calculator_names_the_atoms_at_the_same_position(pair):
    atoms = Atoms("Ag4", positions=[[0, 0, 0], [2.7, 0, 0], [2.7, 0, 0], [0, 2.7, 0.2]])
    atoms.calc = KANCalculator(pair)
    with pytest.raises(ValueError, match=r"not finite \(atoms 1, 2\); the closest pair is atoms 1 and 2 at 0 Å"):
        atoms.get_forces()


def test_demo_reports_a_failed_training_in_one_message(tmp_path):
    """nequip-train failing inside the demo ends with exit 2 and the error, not a traceback."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "broken.yaml").write_text("run: [train]\ntraining_module: {_target_: no.such.Module}\n")
    proc = subprocess.run([sys.executable, "-m", "kan_mlip.cli", "demo", "--workdir", str(tmp_path / "demo"),
                           "--config-dir", str(configs), "--config", "broken", "--frames", "10", "--epochs", "1"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "kan-mlip demo: error: nequip-train failed" in proc.stderr
    assert "kan_mlip/cli.py" not in proc.stderr  # no traceback through the demo (nequip-train's own output may have one)
