"""kan-deploy, the ASE KANCalculator and pair_style allegro-kan agree with the eager model."""

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.geometry.cell import cellpar_to_cell
from ase.io import read, write

from kan_mlip.ase import KANCalculator
from kan_mlip.bench.lammps import LammpsError, loop_time, run_lammps, single_point, thermo_table
from kan_mlip.compiler import deploy, load_deployed
from kan_mlip.data import ag_vacancy_cell
from kan_mlip.evaluation import predict
from kan_mlip.lmp_plugin import PLUGIN_DIR
from kan_mlip.models.io import build_model, save_model

HFO2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "hfo2" / "hfo2_pwmlff1140.extxyz.gz"
TOL = {"float64": 1e-8, "float32": 1e-4}

pytestmark = pytest.mark.skipif(not (PLUGIN_DIR / "allegro_kan_plugin.so").exists(),
                                reason="pair_style plugin not built: run `make plugin`")


def model_config(type_names, seed=3, placement="readout", basis="gaussian", r_max=4.5):
    shifts = {"Ag": 0.03, "Hf": -9.5, "O": -7.5}
    return {
        "_target_": "kan_mlip.models.KANAllegroModel", "seed": seed, "model_dtype": "float64",
        "type_names": list(type_names), "r_max": r_max, "l_max": 1, "num_layers": 2,
        "num_scalar_features": 16, "num_tensor_features": 4,
        "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": 8},
        "scalar_embed_mlp_hidden_layers_width": 16, "allegro_mlp_hidden_layers_width": 16,
        "readout_mlp_hidden_layers_width": 8, "avg_num_neighbors": 30.0,
        "per_type_energy_shifts": {t: shifts[t] for t in type_names},
        "per_type_energy_scales": {t: 0.5 for t in type_names},
        "kan_placement": placement, "kan_basis": basis,
        # per-type-pair cutoffs where there are two types: O-O shorter than the rest
        "per_edge_type_cutoff": {"Hf": r_max, "O": {"Hf": r_max, "O": 3.6}} if len(type_names) == 2 else None,
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("deploy")


@pytest.fixture(scope="module")
def deployed(workdir):
    """{(elements, dtype): (pair.pt, eager GraphModel)} built from kan_mlip model.pth files."""
    out = {}
    for types in (("Ag",), ("Hf", "O")):
        cfg = model_config(types, placement="all" if types == ("Hf", "O") else "readout",
                           basis="bspline" if types == ("Hf", "O") else "gaussian")
        model = build_model(cfg)
        src = save_model(workdir / f"{'_'.join(types)}.pth", cfg, model)
        for dtype in ("float64", "float32"):
            pair = workdir / f"{'_'.join(types)}_{dtype}.pt"
            deploy(src, pair, dtype=dtype, log=lambda *_: None)
            out[types, dtype] = (pair, model)
    return out


def structures():
    ag = bulk("Ag", "fcc", a=4.09, cubic=True).repeat((3, 3, 2))
    vac = ag_vacancy_cell()
    vac.rattle(0.1, seed=4)
    with gzip.open(HFO2, "rt") as fh:
        hfo2 = read(io.StringIO(fh.read()), index=0, format="extxyz")
    # LAMMPS stores a triclinic cell with a along x and b in the xy plane: rotate into that frame
    hfo2 = Atoms(hfo2.symbols, scaled_positions=hfo2.get_scaled_positions(), cell=cellpar_to_cell(hfo2.cell.cellpar()), pbc=True)
    return {"ag_bulk": (ag, ("Ag",)), "ag_vacancy_rattled": (vac, ("Ag",)), "hfo2_frame": (hfo2, ("Hf", "O"))}


STRUCTURES = structures()


def lammps_single_point(atoms, pair, elements, workdir, nprocs=1, tag="sp", output=False):
    """(energy, forces, per-atom energies, virial in LAMMPS order[, screen output]) of a `run 0`."""
    got = single_point(atoms, pair, elements, workdir, nprocs=nprocs, tag=tag)
    return got if output else got[:4]


def ase_reference(atoms, pair):
    a = atoms.copy()
    a.calc = KANCalculator(pair)
    s = a.get_stress()  # xx yy zz yz xz xy
    virial = -np.array([s[0], s[1], s[2], s[5], s[4], s[3]]) * a.get_volume()  # LAMMPS order xx yy zz xy xz yz
    return a.get_potential_energy(), a.get_forces(), a.get_potential_energies(), virial


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(STRUCTURES))
def test_lammps_equals_ase_calculator_and_eager_model(name, dtype, deployed, workdir):
    atoms, elements = STRUCTURES[name]
    pair, eager = deployed[elements, dtype]
    e_lmp, f_lmp, ei_lmp, w_lmp = lammps_single_point(atoms, pair, elements, workdir, tag=f"{name}_{dtype}")
    e_ase, f_ase, ei_ase, w_ase = ase_reference(atoms, pair)
    tol = TOL[dtype]
    n = len(atoms)
    assert abs(e_lmp - e_ase) < tol * n and abs(ei_lmp.sum() - e_lmp) < tol * n
    np.testing.assert_allclose(f_lmp, f_ase, atol=tol)
    np.testing.assert_allclose(ei_lmp, ei_ase, atol=tol)
    np.testing.assert_allclose(w_lmp, w_ase, atol=tol * max(1.0, np.abs(w_ase).max()), rtol=1e-6)
    if dtype == "float64":
        ref = predict(eager, [atoms])
        assert abs(ref["energy"][0] - e_lmp) < tol
        np.testing.assert_allclose(f_lmp, ref["forces"][0], atol=tol)
    assert np.abs(f_lmp).max() > 1e-3 or name == "ag_bulk"  # forces are not trivially zero


def test_ase_stress_is_the_strain_derivative(deployed):
    atoms, _ = STRUCTURES["hfo2_frame"]
    a = atoms.copy()
    a.calc = KANCalculator(deployed[("Hf", "O"), "float64"][0])
    stress = a.get_stress()

    def energy(strain):
        b = a.copy()
        b.calc = a.calc
        b.set_cell(a.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        return b.get_potential_energy()

    eps = 1e-5
    for k, (i, j) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        d = np.zeros((3, 3))
        d[i, j] += eps / 2
        d[j, i] += eps / 2
        fd = (energy(d) - energy(-d)) / (2 * eps) / a.get_volume()
        assert abs(fd - stress[k]) < 1e-7, (k, fd, stress[k])


def test_two_mpi_ranks_equal_one(deployed, workdir):
    atoms, elements = STRUCTURES["ag_vacancy_rattled"]
    big = atoms.repeat((2, 1, 1))
    pair = deployed[elements, "float64"][0]
    e1, f1, ei1, w1 = lammps_single_point(big, pair, elements, workdir, nprocs=1, tag="mpi1")
    e2, f2, ei2, w2 = lammps_single_point(big, pair, elements, workdir, nprocs=2, tag="mpi2")
    assert abs(e1 - e2) < 1e-8
    np.testing.assert_allclose(f2, f1, atol=1e-10)
    np.testing.assert_allclose(ei2, ei1, atol=1e-10)
    np.testing.assert_allclose(w2, w1, atol=1e-8)


def test_example_nvt_runs_and_reports_timing(deployed, workdir):
    examples = Path(__file__).resolve().parents[1] / "examples" / "lammps"
    out = run_lammps(examples / "in.ag_nvt", {"model": deployed[("Ag",), "float64"][0], "steps": 50}, cwd=workdir)
    timing = loop_time(out)
    assert timing["atoms"] == 71 and timing["steps"] == 50 and timing["ms_per_step"] > 0
    rows = thermo_table(out)
    assert rows and all(np.isfinite(r["PotEng"]) for r in rows)


def test_malloc_tuning_is_logged_and_can_be_switched_off(deployed, workdir, monkeypatch):
    """The pair style keeps freed blocks in glibc's heap (no per-step page faults), says so in the log,
    and leaves malloc alone with KAN_MLIP_MALLOC_TUNING=0; the thermo output is the same either way."""
    examples = Path(__file__).resolve().parents[1] / "examples" / "lammps"
    variables = {"model": deployed[("Ag",), "float64"][0], "steps": 10}
    tuned = run_lammps(examples / "in.ag_nvt", variables, cwd=workdir)
    monkeypatch.setenv("KAN_MLIP_MALLOC_TUNING", "0")
    default = run_lammps(examples / "in.ag_nvt", variables, cwd=workdir)
    assert "malloc keeps freed blocks" in tuned and "malloc keeps freed blocks" not in default
    assert [r["PotEng"] for r in thermo_table(tuned)] == [r["PotEng"] for r in thermo_table(default)]


# ---- bad input: a clear LAMMPS error, never a crash ----

def _pair_coeff_input(workdir, pair_line, extra="", tag="bad"):
    atoms, _ = STRUCTURES["ag_vacancy_rattled"]
    data = workdir / "bad.data"
    write(data, atoms, format="lammps-data", specorder=["Ag"], masses=True, atom_style="atomic")
    inp = workdir / f"in.{tag}"
    inp.write_text(f"units metal\natom_style atomic\nboundary p p p\n{extra}read_data {data}\n"
                   f"pair_style allegro-kan\n{pair_line}\nrun 0\n")
    return inp


def _expect_lammps_error(inp, workdir, *fragments):
    with pytest.raises(LammpsError) as info:
        run_lammps(inp, cwd=workdir)
    message = str(info.value)
    assert "ERROR" in message and "exit -" not in message  # an error, not a signal (segfault/abort)
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def bad_files(deployed, workdir):
    corrupt = workdir / "corrupt.pt"
    corrupt.write_bytes(b"this is not a torchscript archive" * 100)
    module, meta = load_deployed(deployed[("Ag",), "float64"][0])
    old = workdir / "old_version.pt"
    extra = {k: (json.dumps(v) if not isinstance(v, str) else v) for k, v in meta.items()}
    extra["kan_mlip_version"] = "0.0.9"
    torch.jit.save(module, str(old), _extra_files=extra)
    other_torch = workdir / "other_torch.pt"
    extra = dict(extra, kan_mlip_version=meta["kan_mlip_version"], torch_version="1.13.1")
    torch.jit.save(module, str(other_torch), _extra_files=extra)
    return {"corrupt": corrupt, "old": old, "other_torch": other_torch}


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("missing", ["cannot open model file"]),
        ("corrupt", ["not a loadable kan-deploy model file"]),
        ("old", ["deployed by kan_mlip 0.0.9", "re-run kan-deploy"]),
        ("other_torch", ["torch 1.13.1", "re-run kan-deploy"]),
        ("unknown_element", ["element 'Cu'", "not in the model"]),
        ("wrong_count", ["expected 4 arguments, got 5"]),
        ("newton_off", ["requires 'newton on'"]),
    ],
)
def test_bad_input_gives_a_clear_lammps_error(case, fragments, deployed, bad_files, workdir):
    good = deployed[("Ag",), "float64"][0]
    lines = {
        "missing": f"pair_coeff * * {workdir / 'nope.pt'} Ag",
        "corrupt": f"pair_coeff * * {bad_files['corrupt']} Ag",
        "old": f"pair_coeff * * {bad_files['old']} Ag",
        "other_torch": f"pair_coeff * * {bad_files['other_torch']} Ag",
        "unknown_element": f"pair_coeff * * {good} Cu",
        "wrong_count": f"pair_coeff * * {good} Ag Ag",
        "newton_off": f"pair_coeff * * {good} Ag",
    }
    extra = "newton off\n" if case == "newton_off" else ""
    _expect_lammps_error(_pair_coeff_input(workdir, lines[case], extra, tag=case), workdir, *fragments)


@pytest.mark.parametrize("source", ["missing.ckpt", "not_a_model.ckpt", "garbage.pth"])
def test_kan_deploy_rejects_bad_sources_without_writing(source, workdir):
    src = workdir / source
    if source != "missing.ckpt":
        src.write_bytes(b"\x00not a model" * 50)
    out = workdir / f"{source}.pt"
    proc = subprocess.run([str(Path(sys.executable).with_name("kan-deploy")), str(src), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "kan-deploy: error:" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not list(workdir.glob(f".{out.name}.*"))


def test_deploy_records_metadata(deployed):
    _, meta = load_deployed(deployed[("Hf", "O"), "float32"][0])
    assert meta["type_names"] == ["Hf", "O"] and meta["num_types"] == 2 and meta["model_dtype"] == "float32"
    assert meta["kan_blocks"] == {"two_body_embed": "bspline", "latent": "bspline", "readout": "bspline"}
    assert meta["r_max"] == 4.5 and np.allclose(meta["cutoff_matrix"], [[4.5, 4.5], [4.5, 3.6]])
    assert meta["torch_version"] == torch.__version__.split("+")[0] and meta["kan_mlip_version"]


def test_npt_runs_on_the_model_virial(deployed, workdir):
    """The barostat acts on the pair style's virial: the cell responds to the model's pressure."""
    inp = workdir / "in.npt"
    inp.write_text(f"""units metal
atom_style atomic
boundary p p p
lattice fcc 4.09
region box block 0 3 0 3 0 2
create_box 1 box
create_atoms 1 box
group vacancy id 1
delete_atoms group vacancy compress yes
mass 1 107.8682
pair_style allegro-kan
pair_coeff * * {deployed[("Ag",), "float64"][0]} Ag
velocity all create 300 12345 mom yes rot yes
timestep 0.001
fix npt all npt temp 300 300 0.1 iso 0 0 0.5
thermo 20
thermo_style custom step temp pe press vol
run 100
""")
    rows = thermo_table(run_lammps(inp, cwd=workdir))
    volumes = [r["Volume"] for r in rows]
    assert len(rows) == 6 and all(np.isfinite(volumes)) and abs(volumes[-1] - volumes[0]) > 1e-3 * volumes[0]


def test_float32_model_deploys_as_float64_with_exact_uniform_knots(workdir):
    # a float32-trained model run in float64: its grids are float32 roundings of uniform knots; the float64
    # deployment must get the exact ones back (cast knots, uniform to ~1e-8 only, take the ops' slow path)
    from kan_mlip.compiler.deploy import _in_dtype
    from kan_mlip.models.io import load_model_and_config

    cfg = dict(model_config(("Ag",), basis="bspline"), model_dtype="float32")
    src = save_model(workdir / "ag_float32.pth", cfg, build_model(cfg))
    meta = deploy(src, workdir / "ag_float32_as_float64.pt", dtype="float64", log=lambda *_: None)
    assert meta["model_dtype"] == "float64"
    model, config = load_model_and_config(src)
    rebuilt = _in_dtype(model, config, "float64")
    grids = {n: b for n, b in rebuilt.named_buffers() if n.endswith("basis.grid")}
    assert len(grids) == 2  # the readout's two KAN layers
    for name, grid in grids.items():
        assert grid.dtype == torch.float64
        step = grid[:, 1:] - grid[:, :-1]
        assert float((step - step[:, :1]).abs().max() / step[:, :1].abs().min()) < 1e-12, name
        cast = dict(model.named_buffers())[name].double()
        assert 0 < float((grid - cast).abs().max()) < 1e-6  # the float32 source held only its rounding
    # parameters are the source's, only cast
    for (name, p), (_, q) in zip(model.named_parameters(), rebuilt.named_parameters()):
        assert torch.equal(p.double(), q), name
