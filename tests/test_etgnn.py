"""ETGNN Born-charge model (kan_mlip.etgnn): symmetry, sum rule, TorchScript, gradients, training, tools, bad input."""

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read, write

from kan_mlip.etgnn import ETGNNBorn
from kan_mlip.etgnn.data import (BornDataError, build_graph, collate, model_inputs, read_born_dataset,
                                 split_indices)
from kan_mlip.etgnn.model import build_triplets, spherical_bessel_zeros, spherical_jn

HEADS = ["mlp", "gaussian", "bspline"]
TINY = dict(hidden_channels=8, int_emb_size=4, basis_emb_size=4, num_blocks=1, num_spherical=3, num_radial=3,
            num_triplet_features=4, num_before_skip=1, num_after_skip=1, num_residual_triplet=1)
SMALL = dict(hidden_channels=16, int_emb_size=8, basis_emb_size=4, num_blocks=1, num_spherical=3, num_radial=4,
             num_triplet_features=8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These graphs are tiny: torch's second thread only adds synchronisation (several times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def crystal(seed=0, rattle=0.15):
    """A low-symmetry periodic Na-Cl-O cell: rattled, triclinic, no two bonds alike."""
    rng = np.random.default_rng(seed)
    cell = np.array([[4.1, 0.2, 0.1], [0.3, 4.3, -0.2], [0.1, -0.4, 4.6]]) + rng.normal(0, 0.05, (3, 3))
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.5, 0.5, 0.5]])
    atoms = Atoms("NaClNaOCl", scaled_positions=frac, cell=cell, pbc=True)
    atoms.positions += rng.normal(0, rattle, (len(atoms), 3))
    return atoms


def model(head="mlp", dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    opts = {**TINY, **kw}
    return ETGNNBorn([8, 11, 17], cutoff=3.6, head=head, **opts).to(dtype)


def predict(m, atoms, dtype=torch.float64):
    return m(*model_inputs(collate([build_graph(atoms, m.cutoff, key=None)], dtype=dtype))).detach()


def random_orthogonal(seed, proper=True):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    return q


# ------------------------------------------------------------------------------------------------ bases
def test_spherical_bessel_functions_and_zeros():
    x = torch.linspace(0.05, 25.0, 500, dtype=torch.float64)
    # closed forms, exact where they do not cancel
    assert torch.allclose(spherical_jn(0, x), torch.sin(x) / x, atol=1e-15)
    big = x[x > 3]
    j2 = (3 / big**2 - 1) * torch.sin(big) / big - 3 * torch.cos(big) / big**2
    assert torch.allclose(spherical_jn(2, big), j2, atol=1e-14)
    # small argument: leading term x^l / (2l+1)!!, where the closed forms lose every digit in float32
    small = torch.tensor([1e-3, 1e-2], dtype=torch.float32)
    assert torch.allclose(spherical_jn(4, small).double(), small.double()**4 / 945, rtol=1e-5)
    zeros = spherical_bessel_zeros(4, 5)
    assert np.allclose(zeros[0], np.pi * np.arange(1, 6))
    assert zeros[1][0] == pytest.approx(4.493409457909064, abs=1e-12)  # tan x = x
    for l, zl in enumerate(zeros):
        values = spherical_jn(l, torch.tensor(zl, dtype=torch.float64))
        assert torch.allclose(values, torch.zeros(5, dtype=torch.float64), atol=1e-12)
        assert all(b > a for a, b in zip(zl, zl[1:]))


def test_triplets_drop_only_the_back_bond():
    atoms = crystal()
    g = build_graph(atoms, 3.6, key=None)
    ei, shift = torch.tensor(g.edge_index), torch.tensor(g.edge_shift)
    idx_kj, idx_ji = build_triplets(ei, shift, len(atoms))
    expected = set()
    for e2 in range(ei.shape[1]):  # bond j -> i
        for e1 in range(ei.shape[1]):  # bond k -> j
            if ei[1, e1] == ei[0, e2] and not (ei[0, e1] == ei[1, e2] and bool((shift[e1] + shift[e2] == 0).all())):
                expected.add((e1, e2))
    assert set(zip(idx_kj.tolist(), idx_ji.tolist())) == expected
    assert len(expected) > 0


# ------------------------------------------------------------------------------------------------ symmetry
@pytest.mark.parametrize("head", HEADS)
def test_rotations_and_reflections_rotate_the_tensors(head):
    m = model(head)
    atoms = crystal()
    z = predict(m, atoms)
    assert z.abs().max() > 1e-3
    for seed, proper in [(1, True), (2, True), (3, False)]:
        R = random_orthogonal(seed, proper)
        rotated = atoms.copy()
        rotated.set_cell(atoms.cell.array @ R.T, scale_atoms=False)
        rotated.positions = atoms.positions @ R.T
        Rt = torch.tensor(R)
        assert torch.allclose(predict(m, rotated), Rt @ z @ Rt.T, atol=1e-10, rtol=0)


def test_inversion_leaves_a_polar_rank2_tensor_unchanged():
    m = model("gaussian")
    atoms = crystal(1)
    inverted = atoms.copy()
    inverted.set_cell(-atoms.cell.array, scale_atoms=False)
    inverted.positions = -atoms.positions
    assert torch.allclose(predict(m, inverted), predict(m, atoms), atol=1e-10, rtol=0)  # (-1) Z (-1)^T = Z


def test_translation_and_wrapping_change_nothing():
    m = model("bspline")
    atoms = crystal(2)
    z = predict(m, atoms)
    moved = atoms.copy()
    moved.positions += np.array([1.7, -3.2, 0.9])
    moved.wrap()  # other images of the same atoms: other cell offsets in the graph
    assert torch.allclose(predict(m, moved), z, atol=1e-10, rtol=0)


def test_permuting_atoms_permutes_the_tensors():
    m = model("mlp")
    atoms = crystal(3)
    perm = np.array([3, 0, 4, 2, 1])
    assert torch.allclose(predict(m, atoms[perm]), predict(m, atoms)[perm], atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-13), (torch.float32, 1e-5)])
def test_sum_rule_makes_each_structure_neutral(dtype, tol):
    m = model("gaussian", dtype=dtype, sum_rule=True)
    graphs = [build_graph(crystal(s), m.cutoff, key=None) for s in range(3)]
    z = m(*model_inputs(collate(graphs, dtype=dtype))).detach()
    assert z.abs().max() > 0.01
    for k, total in enumerate(torch.split(z, 5)):
        assert total.sum(0).abs().max() < tol, k
    without = model("gaussian", dtype=dtype)(*model_inputs(collate(graphs, dtype=dtype))).detach()
    assert without[:5].sum(0).abs().max() > 1e-3  # the option is what makes it vanish


def test_a_structure_predicts_the_same_alone_and_in_a_batch():
    m = model("bspline", sum_rule=True)
    graphs = [build_graph(crystal(s), m.cutoff, key=None) for s in range(3)]
    batch = m(*model_inputs(collate(graphs, dtype=torch.float64))).detach()
    alone = torch.cat([m(*model_inputs(collate([g], dtype=torch.float64))).detach() for g in graphs])
    assert torch.allclose(batch, alone, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------------ numerics
@pytest.mark.parametrize("head", HEADS)
def test_torchscript_equals_eager(head, tmp_path):
    m = model(head, kan_placement="all", sum_rule=True).eval()
    graph_inputs = model_inputs(collate([build_graph(crystal(s), m.cutoff, key=None) for s in range(2)],
                                        dtype=torch.float64))
    scripted = torch.jit.script(m)
    torch.jit.save(scripted, str(tmp_path / "m.pt"))
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    eager = m(*graph_inputs)
    assert torch.allclose(loaded(*graph_inputs), eager, atol=1e-12, rtol=0)
    assert torch.allclose(scripted(*graph_inputs), eager, atol=1e-12, rtol=0)


@pytest.mark.parametrize("head", HEADS)
def test_parameter_gradients_equal_finite_differences(head):
    m = model(head, kan_placement="all", sum_rule=True)
    inputs = model_inputs(collate([build_graph(crystal(4), m.cutoff, key=None)], dtype=torch.float64))
    target = torch.randn(5, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def loss():
        return ((m(*inputs) - target) ** 2).mean()

    m.zero_grad()
    loss().backward()
    rng = np.random.default_rng(0)
    checked = 0
    for name, p in m.named_parameters():
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for k in rng.choice(flat.numel(), size=min(2, flat.numel()), replace=False):
            h = 1e-6
            old = float(flat[k])
            with torch.no_grad():
                flat[k] = old + h
                up = float(loss())
                flat[k] = old - h
                down = float(loss())
                flat[k] = old
            fd = (up - down) / (2 * h)
            assert float(grad[k]) == pytest.approx(fd, rel=1e-5, abs=1e-9), f"{name}[{k}]"
            checked += 1
    assert checked > 40


# ------------------------------------------------------------------------------------------------ training
def synthetic_dataset(path, n=30, seed=0):
    """Rattled crystals whose Z* follow a pair model (bond-length dependent dyads, sum rule applied)."""
    rng = np.random.default_rng(seed)
    frames = []
    strength = {8: -1.0, 11: 1.2, 17: -0.6}
    for s in range(n):
        atoms = crystal(100 + s, rattle=0.2)
        atoms.set_cell(atoms.cell.array * rng.uniform(0.95, 1.05), scale_atoms=True)
        from ase.neighborlist import neighbor_list

        i, j, D, d = neighbor_list("ijDd", atoms, 3.6)
        z = np.zeros((len(atoms), 3, 3))
        for a, b, v, r in zip(i, j, D, d):
            e = v / r
            z[a] += strength[atoms.numbers[b]] * math.exp(-(r - 2.2) ** 2) * np.outer(e, e)
        z -= z.mean(0)
        atoms.arrays["born_charges"] = z.reshape(len(atoms), 9)
        frames.append(atoms)
    write(str(path), frames, format="extxyz")
    return path


@pytest.mark.parametrize("head", HEADS)
def test_a_few_epochs_lower_the_validation_mae(head, tmp_path):
    from kan_mlip.etgnn.train import TrainOptions, build_model, evaluate, load_graphs, train

    data = synthetic_dataset(tmp_path / "bec.extxyz")
    opts = TrainOptions(data=str(data), out_dir=str(tmp_path / "run"), head=head, cutoff=3.6, model=SMALL, epochs=4,
                        batch_size=4, lr=3e-3, sum_rule=True, seed=1)
    graphs = load_graphs(str(data), opts.cutoff)
    split = split_indices(len(graphs), opts.split_seed)
    initial = evaluate(build_model(opts, [8, 11, 17]), graphs, split["validation"])["mae"]
    summary = train(opts, log=lambda m: None)
    assert summary["best_val_mae"] < 0.8 * initial
    assert (tmp_path / "run" / "best.ckpt").exists() and (tmp_path / "run" / "last.ckpt").exists()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "epoch    4/4" in log and "val MAE" in log
    # resuming a finished run trains no further epoch; a longer one continues from epoch 4
    opts.epochs = 5
    again = train(opts, log=lambda m: None)
    assert [h["epoch"] for h in again["history"]] == [1, 2, 3, 4, 5]


def test_study_numbers_are_recomputed_from_the_saved_best_models(tmp_path):
    from kan_mlip.etgnn.study import StudyOptions, run_study
    from kan_mlip.etgnn.train import evaluate, load_checkpoint, load_graphs

    data = synthetic_dataset(tmp_path / "bec.extxyz", n=15)
    opts = StudyOptions(data=str(data), out_dir=str(tmp_path / "study"), heads=["mlp", "gaussian"], seeds=[0],
                        epochs=2, cutoff=3.6, batch_size=4, model=SMALL, sum_rule=True)
    result = run_study(opts, log=lambda m: None, command="kan-etgnn study ...")
    out = tmp_path / "study"
    for name in ("study.json", "study.csv", "report.md", "parity.png", "models/best.pt", "models/mlp-seed0.ckpt"):
        assert (out / name).exists(), name
    graphs = load_graphs(str(data), 3.6)
    test_split = split_indices(len(graphs), 0)["test"]
    for row in result["runs"]:
        m, _ = load_checkpoint(out / "models" / f"{row['head']}-seed{row['seed']}.ckpt")
        assert evaluate(m, graphs, test_split)["mae"] == pytest.approx(row["test_mae"], rel=1e-12)
    report = (out / "report.md").read_text()
    assert "| MLP |" in report and "| KAN (Gaussian) |" in report and "0.00502" in report
    assert json.loads((out / "study.json").read_text())["table"][0]["head"] == "mlp"


def test_split_is_seeded_disjoint_and_6_2_2():
    s = split_indices(1520, 0)
    assert (len(s["train"]), len(s["validation"]), len(s["test"])) == (912, 304, 304)
    assert sorted(s["train"] + s["validation"] + s["test"]) == list(range(1520))
    assert split_indices(1520, 0) == s and split_indices(1520, 1) != s


# ------------------------------------------------------------------------------------------------ using a model
@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    from kan_mlip.etgnn.predict import deploy
    from kan_mlip.etgnn.train import TrainOptions, save_checkpoint

    folder = tmp_path_factory.mktemp("deployed")
    m = model("gaussian", sum_rule=True)
    opts = TrainOptions(data="-", out_dir=str(folder), head="gaussian", dtype="float64")
    save_checkpoint(folder / "best.ckpt", m, opts, {"state": {"best_epoch": 0}})
    deploy(folder / "best.ckpt", folder / "bec.pt")
    return folder, m


def test_deployed_file_predictor_and_calculator_agree(deployed):
    from kan_mlip.etgnn.predict import BornChargePredictor, ETGNNCalculator

    folder, m = deployed
    atoms = crystal(5)
    eager = predict(m, atoms).numpy()
    for path in (folder / "bec.pt", folder / "best.ckpt"):
        assert np.allclose(BornChargePredictor(path).predict(atoms), eager, atol=1e-12, rtol=0)
    atoms.calc = ETGNNCalculator(folder / "bec.pt")
    z = atoms.calc.get_property("born_charges", atoms)
    assert z.shape == (5, 3, 3) and np.allclose(z, eager, atol=1e-12)
    assert abs(z.sum(0)).max() < 1e-13


def run_cli(*args):
    """kan-etgnn in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io
    from types import SimpleNamespace

    from kan_mlip.etgnn.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def test_a_deployed_kan_model_runs_in_a_fresh_process(deployed, tmp_path):
    """The scripted KAN layers call the kan_mlip ops: loading the file must register them first."""
    folder, m = deployed
    write(str(tmp_path / "POSCAR"), crystal(9), format="vasp")
    out = subprocess.run([sys.executable, "-m", "kan_mlip.etgnn.cli", "predict", str(folder / "bec.pt"),
                          str(tmp_path / "POSCAR"), "-o", str(tmp_path / "z.npy")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert np.allclose(np.load(tmp_path / "z.npy"), predict(m, read(str(tmp_path / "POSCAR"))).numpy(), atol=1e-12)


@pytest.mark.parametrize("fmt, name", [("vasp", "POSCAR"), ("cif", "s.cif"), ("extxyz", "s.extxyz")])
def test_cli_predicts_structure_files(deployed, tmp_path, fmt, name):
    folder, m = deployed
    atoms = crystal(6)
    write(str(tmp_path / name), atoms, format=fmt)
    out = run_cli("predict", folder / "bec.pt", tmp_path / name)
    assert out.returncode == 0, out.stderr
    lines = [l for l in out.stdout.splitlines() if not l.startswith("#")]
    assert len(lines) == 5 and lines[0].split()[1] == "Na"
    values = np.array([[float(v) for v in l.split()[2:]] for l in lines]).reshape(5, 3, 3)
    expected = predict(m, read(str(tmp_path / name))).numpy()
    assert np.allclose(values, expected, atol=1e-4)


def test_cli_writes_extxyz_and_json(deployed, tmp_path):
    folder, m = deployed
    frames = [crystal(7), crystal(8)]
    write(str(tmp_path / "in.extxyz"), frames)
    assert run_cli("predict", folder / "bec.pt", tmp_path / "in.extxyz", "-o", tmp_path / "out.extxyz").returncode == 0
    back = read_born_dataset(tmp_path / "out.extxyz")
    assert len(back) == 2 and np.allclose(back[1].arrays["born_charges"].reshape(5, 3, 3),
                                          predict(m, frames[1]).numpy(), atol=1e-7)  # extxyz: 8 digits
    assert run_cli("predict", folder / "bec.pt", tmp_path / "in.extxyz", "-o", tmp_path / "z.json").returncode == 0
    assert np.array(json.loads((tmp_path / "z.json").read_text())[0]["born_charges"]).shape == (5, 3, 3)


def test_cli_parity_plot(deployed, tmp_path):
    folder, m = deployed
    data = synthetic_dataset(tmp_path / "bec.extxyz", n=6)
    out = run_cli("parity", folder / "bec.pt", "--data", data, "--split", "all", "-o", tmp_path / "p.png")
    assert out.returncode == 0, out.stderr
    assert "all split: 6 structures, MAE" in out.stdout and (tmp_path / "p.png").stat().st_size > 10000


def test_cli_trains_and_deploys(tmp_path):
    data = synthetic_dataset(tmp_path / "bec.extxyz", n=8)
    out = run_cli("train", "--data", data, "--cutoff", 3.6, "--epochs", 1, "--batch-size", 4, "--head", "bspline",
                  "--model", json.dumps(SMALL), "--sum-rule", "--dtype", "float64", "-o", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    assert "epoch    1/1" in out.stdout and "ETGNN head=bspline" in out.stdout
    out = run_cli("deploy", tmp_path / "run" / "best.ckpt", "-o", tmp_path / "bec.pt")
    assert out.returncode == 0 and (tmp_path / "bec.pt").exists(), out.stderr
    write(str(tmp_path / "plain.extxyz"), crystal())
    out = run_cli("train", "--data", tmp_path / "plain.extxyz", "-o", tmp_path / "bad")
    assert out.returncode == 2 and "no per-atom array 'born_charges'" in out.stderr


def test_cli_help_explains_every_subcommand():
    from kan_mlip.etgnn.cli import build_parser

    parser = build_parser()
    for command in ("train", "study", "deploy", "predict", "parity"):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([command, "--help"])
        assert exit_.value.code == 0
    for action in parser._subparsers._group_actions[0].choices["train"]._actions:
        assert action.help, action.dest


# ------------------------------------------------------------------------------------------------ bad input
def test_structures_without_or_with_malformed_born_charges_are_refused(tmp_path):
    atoms = crystal()
    write(str(tmp_path / "none.extxyz"), atoms)
    with pytest.raises(BornDataError, match="no per-atom array 'born_charges'"):
        read_born_dataset(tmp_path / "none.extxyz")
    atoms.arrays["born_charges"] = np.zeros((5, 6))
    write(str(tmp_path / "six.extxyz"), atoms)
    with pytest.raises(BornDataError, match=r"shape \(5, 9\) or \(5, 3, 3\).*\(5, 6\)"):
        read_born_dataset(tmp_path / "six.extxyz")
    atoms.arrays["born_charges"] = np.zeros((5, 3, 3))
    g = build_graph(atoms, 3.6)
    assert g.born_charges.shape == (5, 3, 3)


def test_unknown_elements_are_an_error(deployed):
    from kan_mlip.etgnn.predict import BornChargePredictor

    folder, m = deployed
    atoms = crystal()
    atoms.numbers[1] = 26  # Fe
    with pytest.raises(ValueError, match="not trained on element.*Fe"):
        BornChargePredictor(folder / "bec.pt").predict(atoms)
    with pytest.raises(ValueError, match="not trained on"):
        predict(m, atoms)
    out = run_cli("predict", folder / "bec.pt", "missing.cif")
    assert out.returncode == 2 and "no such structure file" in out.stderr


def test_isolated_atoms_get_defined_finite_tensors(deployed):
    from kan_mlip.etgnn.predict import BornChargePredictor

    folder, m = deployed
    predictor = BornChargePredictor(folder / "bec.pt")
    pair = Atoms("NaCl", positions=[[0, 0, 0], [2.4, 0, 0]], cell=[12, 12, 12], pbc=False)
    lone = pair + Atoms("O", positions=[[9, 9, 9]])
    with pytest.warns(UserWarning, match=r"atom\(s\) \[2\] have no neighbour"):
        z = predictor.predict(lone)
    assert np.isfinite(z).all() and abs(z.sum(0)).max() < 1e-13
    no_rule = model("gaussian")
    assert torch.equal(predict(no_rule, lone)[2], torch.zeros(3, 3, dtype=torch.float64))
    single = Atoms("O", positions=[[0, 0, 0]], cell=[5, 5, 5], pbc=False)  # no bond at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(predictor.predict(single), np.zeros((1, 3, 3)))


def test_overlapping_atoms_are_an_error():
    atoms = Atoms("NaCl", positions=[[0, 0, 0], [0, 0, 1e-6]], cell=[5, 5, 5], pbc=True)
    with pytest.raises(BornDataError, match="overlap"):
        build_graph(atoms, 3.6, key=None)


def test_bad_model_options_are_refused():
    with pytest.raises(ValueError, match="head must be one of"):
        ETGNNBorn([8], head="chebyshev")
    with pytest.raises(ValueError, match="kan_placement"):
        ETGNNBorn([8], head="gaussian", kan_placement="everywhere")
    with pytest.raises(ValueError, match="atomic numbers"):
        ETGNNBorn([0, 8])
    with pytest.raises(ValueError, match="Unknown option"):
        ETGNNBorn([8], head="gaussian", kan_options={"grid_size": 5})


def test_the_model_needs_torch_and_kan_mlip_nn_only():
    code = (
        "import sys\n"
        "for blocked in ('nequip', 'allegro', 'e3nn', 'ase', 'matplotlib'):\n"
        "    sys.modules[blocked] = None\n"
        "import torch\n"
        "from kan_mlip.etgnn import ETGNNBorn\n"
        "m = ETGNNBorn([8, 14], head='bspline', hidden_channels=8, num_triplet_features=4)\n"
        "pos = torch.tensor([[0., 0, 0], [1.6, 0, 0], [0, 1.6, 0.2]])\n"
        "ei = torch.tensor([[0, 1, 0, 2, 1, 2], [1, 0, 2, 0, 2, 1]])\n"
        "batch = torch.zeros(3, dtype=torch.long)\n"
        "z = m(pos, torch.tensor([14, 8, 8]), ei, torch.zeros(6, 3), torch.zeros(1, 3, 3), batch)\n"
        "assert z.shape == (3, 3, 3) and bool(torch.isfinite(z).all())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ------------------------------------------------------------------------------------------------ real data
SUBSTITUTE = Path(__file__).resolve().parents[1].parent / "shared/data/bec/becs_e3nn_models.extxyz.gz"


@pytest.mark.slow
@pytest.mark.skipif(not SUBSTITUTE.exists(), reason="the substitute Born-charge set is not in ../shared/data")
def test_substitute_data_set_reads_and_obeys_the_sum_rule():
    frames = read_born_dataset(SUBSTITUTE)
    assert len(frames) == 1520 and sum(len(a) for a in frames) == 11220
    worst = max(abs(a.arrays["born_charges"].sum(0)).max() for a in frames)
    assert worst < 1e-6
    isolated = sum(len(build_graph(a, 4.25).isolated) for a in frames[:200])
    assert isolated == 0


@pytest.mark.slow
@pytest.mark.skipif(not SUBSTITUTE.exists(), reason="the substitute Born-charge set is not in ../shared/data")
@pytest.mark.parametrize("head", HEADS)
def test_a_few_epochs_on_the_substitute_data_lower_the_validation_mae(head, tmp_path):
    from kan_mlip.etgnn.train import TrainOptions, build_model, evaluate, load_graphs, train

    opts = TrainOptions(data=str(SUBSTITUTE), out_dir=str(tmp_path), head=head, model=SMALL, epochs=3,
                        max_structures=100, sum_rule=True)
    graphs = load_graphs(opts.data, opts.cutoff, max_structures=100)
    from kan_mlip.etgnn.data import elements_of

    initial = evaluate(build_model(opts, elements_of(graphs)), graphs, split_indices(100, 0)["validation"])["mae"]
    assert train(opts, graphs, log=lambda m: None)["best_val_mae"] < 0.9 * initial
