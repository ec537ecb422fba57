"""Message-passing models (NequIP, NequIP with a KAN output block) deployed and run in LAMMPS.

LAMMPS = KANCalculator = the eager nequip model: energy, forces, per-atom energies and virial, on
1, 2 and 4 MPI ranks. One rank runs the periodic graph (ghosts map onto their owners); several ranks
run local + ghost atoms, exchanging node features between layers through LAMMPS communication, or
(files deployed with --no-ghost-exchange) with a ghost shell as deep as the receptive field.
"""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.geometry.cell import cellpar_to_cell

from kan_mlip.ase import KANCalculator
from kan_mlip.compiler import deploy, load_deployed
from kan_mlip.compiler.deploy import message_passing_layers
from kan_mlip.compiler.exchange import exchange_width
from kan_mlip.data import ag_vacancy_cell
from kan_mlip.evaluation import predict
from kan_mlip.lmp_plugin import PLUGIN_DIR
from kan_mlip.models.io import build_model, save_model

from test_deploy_lammps import STRUCTURES, ase_reference, lammps_single_point

pytestmark = pytest.mark.skipif(not (PLUGIN_DIR / "allegro_kan_plugin.so").exists(),
                                reason="pair_style plugin not built: run `make plugin`")

TOL = {"float64": 1e-8, "float32": 1e-4}


def nequip_config(type_names, target="kan_mlip.models.KANNequIPModel", num_layers=2, r_max=4.5, **kan):
    shifts = {"Ag": 0.03, "Hf": -9.5, "O": -7.5}
    cfg = {
        "_target_": target, "seed": 5, "model_dtype": "float64", "type_names": list(type_names),
        "r_max": r_max, "l_max": 1, "num_layers": num_layers, "num_features": 8,
        "radial_mlp_depth": 1, "radial_mlp_width": 8, "readout_mlp_hidden_layers_depth": 1,
        "readout_mlp_hidden_layers_width": 8, "avg_num_neighbors": 30.0,
        "per_type_energy_shifts": {t: shifts[t] for t in type_names},
        "per_type_energy_scales": {t: 0.5 for t in type_names},
        **kan,
    }
    if len(type_names) == 2:  # per-type-pair cutoffs: O-O shorter than the rest
        cfg["per_edge_type_cutoff"] = {"Hf": r_max, "O": {"Hf": r_max, "O": 3.6}}
    return cfg


MODELS = {
    # 3 layers: a receptive field of 13.5 Å, three times the cutoff
    "ag_kan": (("Ag",), nequip_config(("Ag",), num_layers=3, kan_placement="readout", kan_basis="bspline")),
    "hfo2_kan": (("Hf", "O"), nequip_config(("Hf", "O"), r_max=4.0, kan_placement="readout", kan_basis="gaussian")),
    "ag_nequip_mlp": (("Ag",), nequip_config(("Ag",), target="nequip.model.NequIPGNNModel")),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("message_passing")


@pytest.fixture(scope="module")
def deployed(workdir):
    """{(model, dtype): (pair.pt, eager GraphModel)}, and {(model, "shell"): ...} deployed without the exchange"""
    out = {}
    for name, (_, cfg) in MODELS.items():
        model = build_model(cfg)
        src = save_model(workdir / f"{name}.pth", cfg, model)
        for dtype in ("float64", "float32"):
            pair = workdir / f"{name}_{dtype}.pt"
            deploy(src, pair, dtype=dtype, log=lambda *_: None)
            out[name, dtype] = (pair, model)
        pair = workdir / f"{name}_shell.pt"
        deploy(src, pair, ghost_exchange=False, log=lambda *_: None)
        out[name, "shell"] = (pair, model)
    return out


def _structures():
    vac = STRUCTURES["ag_vacancy_rattled"][0]
    hfo2 = STRUCTURES["hfo2_frame"][0]
    tri = bulk("Ag", "fcc", a=4.09).repeat((3, 3, 3))  # the primitive cell: 60-degree angles
    # in LAMMPS' frame (a along x, b in the xy plane), so that forces compare component by component
    tri = Atoms(tri.symbols, scaled_positions=tri.get_scaled_positions(), cell=cellpar_to_cell(tri.cell.cellpar()), pbc=True)
    tri.rattle(0.1, seed=7)
    thin = bulk("Ag", "fcc", a=4.09, cubic=True).repeat((1, 3, 3))  # 4.09 Å along x: below r_max
    thin.rattle(0.1, seed=8)
    # a 19-atom cluster in a corner of a 30 Å box: at 2 and 4 ranks some subdomains hold no atom
    cluster = bulk("Ag", "fcc", a=4.09, cubic=True).repeat((2, 2, 2))
    cluster = cluster[np.linalg.norm(cluster.positions - cluster.positions.mean(0), axis=1) < 3.0]
    cluster = Atoms(cluster.symbols, positions=cluster.positions - cluster.positions.mean(0) + 6.0, cell=[30, 30, 30],
                    pbc=True)
    cluster.rattle(0.1, seed=9)
    return {"ag_vacancy_71": (vac, "ag_kan"), "hfo2_frame": (hfo2, "hfo2_kan"), "ag_triclinic": (tri, "ag_kan"),
            "ag_thin": (thin, "ag_kan"), "ag_cluster": (cluster, "ag_kan"), "ag_vacancy_mlp": (vac, "ag_nequip_mlp")}


CASES = _structures()


def lammps_point(atoms, pair, elements, workdir, nprocs, tag):
    """(energy, forces, per-atom energies, virial in LAMMPS order, screen output) of a LAMMPS single point."""
    return lammps_single_point(atoms, pair, elements, workdir, nprocs=nprocs, tag=tag, output=True)


def _assert_close(got, ref, tol, n):
    e, f, ei, w = got[:4]
    e_ref, f_ref, ei_ref, w_ref = ref
    assert abs(e - e_ref) < tol * n, (e, e_ref)
    np.testing.assert_allclose(f, f_ref, atol=tol)
    np.testing.assert_allclose(ei, ei_ref, atol=tol)
    np.testing.assert_allclose(w, w_ref, atol=tol * max(1.0, np.abs(w_ref).max()))


@pytest.mark.parametrize("nprocs", [1, 2, 4])
@pytest.mark.parametrize("name", list(CASES))
def test_lammps_equals_calculator_and_eager_model_float64(name, nprocs, deployed, workdir):
    atoms, model = CASES[name]
    elements = MODELS[model][0]
    pair, eager = deployed[model, "float64"]
    got = lammps_point(atoms, pair, elements, workdir, nprocs, f"{name}_{nprocs}_f64")
    ref = ase_reference(atoms, pair)
    _assert_close(got, ref, TOL["float64"], len(atoms))
    assert np.abs(got[1]).max() > 1e-3  # forces are not trivially zero
    if nprocs == 1:  # the calculator against nequip's own model (cell shifts, autograd forces)
        p = predict(eager, [atoms])
        assert abs(p["energy"][0] - ref[0]) < 1e-8
        np.testing.assert_allclose(ref[1], p["forces"][0], atol=1e-8)
    else:
        assert "domain (exchanging) graph" in got[4]


# float32 files within float32's tolerance; files deployed without the exchange (a ghost shell as deep as the
# receptive field) give the same numbers as with it
@pytest.mark.parametrize("variant, nprocs", [("float32", 1), ("float32", 2), ("shell", 2), ("shell", 4)])
@pytest.mark.parametrize("name", ["ag_vacancy_71", "hfo2_frame", "ag_cluster"])
def test_float32_and_ghost_shell_files(name, variant, nprocs, deployed, workdir):
    atoms, model = CASES[name]
    pair = deployed[model, variant][0]
    got = lammps_point(atoms, pair, MODELS[model][0], workdir, nprocs, f"{name}_{nprocs}_{variant}")
    _assert_close(got, ase_reference(atoms, pair), TOL["float32" if variant == "float32" else "float64"], len(atoms))
    if variant == "shell":
        assert "message-passing model on" in got[4]  # the ghost shell was deepened


def test_metadata_records_the_receptive_field(deployed):
    _, meta = load_deployed(deployed["ag_kan", "float64"][0])
    assert meta["message_passing_layers"] == 3 and meta["receptive_field"] == pytest.approx(13.5)
    assert meta["kan_blocks"] == {"readout": "bspline"}
    # floats per node between layers, the widest input of layers 2 and 3: 8x0e+8x1e+8x1o
    assert meta["exchange_width"] == exchange_width(build_model(MODELS["ag_kan"][1])) == 8 * (1 + 3 + 3)
    assert load_deployed(deployed["ag_kan", "shell"][0])[1]["exchange_width"] == 0
    _, meta = load_deployed(deployed["hfo2_kan", "float64"][0])
    assert meta["message_passing_layers"] == 2 and meta["receptive_field"] == pytest.approx(8.0)
    assert np.allclose(meta["cutoff_matrix"], [[4.0, 4.0], [4.0, 3.6]])
    _, meta = load_deployed(deployed["ag_nequip_mlp", "float64"][0])
    assert meta["message_passing_layers"] == 2 and meta["kan_blocks"] == {}
    assert message_passing_layers(build_model(dict(MODELS["ag_kan"][1], num_layers=1))) == 1


def test_a_shallow_ghost_shell_would_be_wrong(deployed, workdir):
    """The test above can fail: with ghosts only one cutoff deep (what a strictly local model needs), a
    3-layer model on 2 ranks gives other forces."""
    atoms, model = CASES["ag_vacancy_71"]
    pair = deployed[model, "shell"][0]
    ref = ase_reference(atoms, pair)
    # the same input, but the model's metadata claims one layer: ghosts stop at r_max + skin
    shallow = _with_metadata(pair, workdir / "shallow.pt", message_passing_layers=1, receptive_field=4.5)
    e, f, *_ = lammps_point(atoms, shallow, ("Ag",), workdir, 2, "shallow")
    assert np.abs(f - ref[1]).max() > 1e-4


def _with_metadata(pair, out, **values):
    """A copy of a deployed file with some metadata values replaced."""
    import json
    import zipfile

    with zipfile.ZipFile(pair) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            key = item.filename.rsplit("/", 1)[-1]
            if "/extra/" in item.filename and key in values:
                data = json.dumps(values[key]).encode()
            dst.writestr(item, data)
    return out


def test_an_exchange_wider_than_the_file_declares_is_an_error(deployed, workdir):
    from kan_mlip.bench.lammps import LammpsError

    atoms, model = CASES["ag_vacancy_71"]
    narrow = _with_metadata(deployed[model, "float64"][0], workdir / "narrow.pt", exchange_width=4)
    with pytest.raises(LammpsError, match="exchange_width"):
        lammps_point(atoms, narrow, ("Ag",), workdir, 2, "narrow")


def test_the_exchange_op_without_lammps_is_the_identity_and_refuses_ghost_nodes():
    import torch

    from kan_mlip.nn.ops import fused_ops_available

    if not fused_ops_available():
        pytest.skip("kan_mlip ops not built")
    x = torch.randn(5, 4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.ops.kan_mlip.ghost_exchange(x, 5)
    assert torch.equal(y, x)
    (g,) = torch.autograd.grad((y * y).sum(), x)
    assert torch.equal(g, 2 * x)
    with pytest.raises(RuntimeError, match="2 ghost nodes but nothing to exchange"):
        torch.ops.kan_mlip.ghost_exchange(x, 7)
