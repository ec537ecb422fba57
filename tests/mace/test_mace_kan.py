"""MACE-KAN (kan_mlip.mace): KAN readouts in mace-torch models, float64.

Runs in the MACE environment (`make test-mace`, .venv-mace); skipped where mace-torch is not installed.
Checks: the constructor contracts of MACE's readouts, scripted = eager, invariance of the energy and
equivariance of the forces under rotations (proper and improper), translations and permutations, forces
= -dE/dx, and the gradient of a force loss with respect to the KAN coefficients (a second derivative)
against finite differences, for every basis, both placements and both KAN code paths (fused ops, reference).
"""

import pytest

pytest.importorskip("mace.modules", reason="mace-torch is not installed here (MACE-KAN runs in .venv-mace: make test-mace)")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402
from e3nn import o3  # noqa: E402
from e3nn.util import jit  # noqa: E402
from mace import data, modules, tools  # noqa: E402
from mace.modules.blocks import LinearReadoutBlock, NonLinearReadoutBlock  # noqa: E402
from mace.tools import torch_geometric  # noqa: E402

from kan_mlip.mace import (  # noqa: E402
    KANNonLinearReadoutBlock,
    KANReadoutBlock,
    build_mace_kan,
    kan_widths,
    to_mace_kan,
)
from kan_mlip.nn.ops import fused_ops_available  # noqa: E402

R_MAX = 3.5
Z_TABLE = tools.AtomicNumberTable([1, 6, 8])
pytestmark = pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning")  # e3nn's codegen
FUSED = [False, pytest.param(True, marks=pytest.mark.skipif(not fused_ops_available(), reason="kan_mlip ops not built"))]


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Graphs of 6-8 atoms: a second thread only adds synchronisation (8x slower on a loaded 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def mace_config(**overrides):
    config = dict(
        r_max=R_MAX, num_bessel=6, num_polynomial_cutoff=5, max_ell=2,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=len(Z_TABLE), hidden_irreps=o3.Irreps("8x0e + 8x1o"),
        MLP_irreps=o3.Irreps("16x0e"), gate=torch.nn.functional.silu, atomic_energies=np.array([-1.0, -2.0, -3.0]),
        avg_num_neighbors=8.0, atomic_numbers=Z_TABLE.zs, correlation=2, radial_type="bessel",
    )
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def mace_model():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(3)
    model = modules.MACE(**mace_config())
    torch.set_default_dtype(previous)
    return model


def kan_parameters(model):
    return [(name, p) for name, p in model.named_parameters() if ".kan." in name]


def mace_kan(mace_model, placement="all", basis="bspline", fused=False, seed=11):
    """MACE-KAN from the shared MACE; the B-spline and Gaussian coefficients are scaled up from their small
    initial values (0.1 of the base branch's), so that the basis functions carry a good part of the energy."""
    torch.manual_seed(seed)
    model = to_mace_kan(mace_model, placement=placement, basis=basis, fused=fused)
    with torch.no_grad():
        for name, p in kan_parameters(model):
            if name.endswith("spline_weight") and basis != "fourier":
                p.mul_(10.0)
    return model


def water_dimer():
    atoms = Atoms("OH2OH2", positions=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0],
                                       [2.9, 0.1, 0.2], [3.3, 0.9, -0.2], [3.2, -0.7, 0.5]])
    atoms.rattle(0.05, seed=1)
    return atoms


def carbon_cell():
    atoms = bulk("C", "diamond", a=3.57, cubic=True)
    atoms.rattle(0.08, seed=2)
    return atoms


SYSTEMS = {"water_dimer": water_dimer, "carbon_cell": carbon_cell}


def graph(atoms):
    config = data.config_from_atoms(atoms)
    atomic_data = data.AtomicData.from_config(config, z_table=Z_TABLE, cutoff=R_MAX)
    batch = next(iter(torch_geometric.dataloader.DataLoader([atomic_data], batch_size=1, shuffle=False)))
    return batch.to_dict()


def energy_forces(model, batch, training=False):
    out = model(dict(batch), training=training, compute_force=True)
    return out["energy"], out["forces"]


def energy(model, batch):
    return model(dict(batch), compute_force=False)["energy"].item()


# --- blocks ------------------------------------------------------------------------------------------


def test_default_kan_is_mace_kans_16_8_4_1_cubic_bspline_on_three_intervals():
    block = KANReadoutBlock(o3.Irreps("8x0e + 8x1o"), o3.Irreps("1x0e"), MLP_irreps=o3.Irreps("16x0e"))
    assert block.kan.widths == [16, 8, 4, 1]
    for layer in block.kan.layers:
        assert layer.basis_name == "bspline"
        assert (layer.basis.grid_size, layer.basis.spline_order) == (3, 3)
    last = KANNonLinearReadoutBlock(o3.Irreps("8x0e"), o3.Irreps("16x0e"), torch.nn.functional.silu, o3.Irreps("1x0e"))
    assert last.kan.widths == [16, 8, 4, 1]
    assert kan_widths(32, 2) == [32, 16, 8, 2]
    assert kan_widths(16, 1, hidden=[5]) == [16, 5, 1]


def test_blocks_take_maces_positional_readout_arguments():
    """MACE builds LinearReadoutBlock(irreps, out, cueq, oeq) and readout_cls(irreps, MLP, gate, out, heads, cueq,
    oeq) positionally: the KAN blocks accept the same, and readout_cls=KANNonLinearReadoutBlock builds a MACE whose
    last readout has a KAN."""
    linear = KANReadoutBlock(o3.Irreps("8x0e + 8x1o"), o3.Irreps("2x0e"), None, None)
    assert isinstance(linear, LinearReadoutBlock)
    assert linear.kan.widths == [16, 8, 4, 2]
    torch.manual_seed(0)
    model = modules.MACE(**mace_config(readout_cls=KANNonLinearReadoutBlock))
    assert type(model.readouts[0]) is LinearReadoutBlock
    assert isinstance(model.readouts[1], KANNonLinearReadoutBlock)
    assert isinstance(model.readouts[1], NonLinearReadoutBlock)
    energy, forces = energy_forces(model, graph(water_dimer()))
    assert torch.isfinite(energy).all() and torch.isfinite(forces).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(MLP_irreps=o3.Irreps("16x0e + 4x1o")), "must be scalars"),
    (dict(MLP_irreps=o3.Irreps("2x0e")), "width >= 1"),
    (dict(basis="chebyshev"), "must be one of"),
    (dict(basis_options={"num_grids": 4}), "Unknown option"),
])
def test_bad_block_options_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KANReadoutBlock(o3.Irreps("8x0e + 8x1o"), o3.Irreps("1x0e"), **kwargs)


def test_bad_conversions_are_refused_with_a_clear_message(mace_model):
    with pytest.raises(ValueError, match="placement"):
        to_mace_kan(mace_model, placement="first")
    with pytest.raises(ValueError, match="already"):
        to_mace_kan(to_mace_kan(mace_model, placement="last"), placement="all")
    with pytest.raises(ValueError, match="no MACE readouts"):
        to_mace_kan(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("basis", ["bspline", "gaussian", "fourier"])
@pytest.mark.parametrize("fused", FUSED)
def test_scripted_blocks_equal_eager_ones_with_their_input_gradients(basis, fused):
    torch.manual_seed(5)
    blocks = [KANReadoutBlock(o3.Irreps("8x0e + 8x1o"), o3.Irreps("1x0e"), basis=basis, fused=fused),
              KANNonLinearReadoutBlock(o3.Irreps("8x0e"), o3.Irreps("16x0e"), torch.nn.functional.silu,
                                       o3.Irreps("1x0e"), basis=basis, fused=fused)]
    for block in blocks:
        scripted = jit.compile(block, in_place=False)
        assert isinstance(scripted, torch.jit.ScriptModule)
        x = (2.0 * torch.randn(13, block.linear.irreps_in.dim if isinstance(block, KANReadoutBlock)
                               else block.linear_1.irreps_in.dim)).requires_grad_(True)
        for _ in range(3):  # the profiling executor optimises after the first calls
            y_eager, y_script = block(x), scripted(x)
            g_eager = torch.autograd.grad(y_eager.sum(), x)[0]
            g_script = torch.autograd.grad(y_script.sum(), x)[0]
            assert (y_eager - y_script).abs().max() <= 1e-12
            assert (g_eager - g_script).abs().max() <= 1e-12


def test_masked_heads_reach_no_kan_coefficient_of_another_head():
    """MACE's multi-head readout zeroes the other heads' hidden channels; with phi(0) = 0 those zeros add nothing,
    so a node's output does not depend on the KAN coefficients that read another head's channels (to rounding: the
    fused ops subtract phi(0) from the sum over all channels)."""
    torch.manual_seed(6)
    irreps_in, heads = o3.Irreps("8x0e"), 2
    x = torch.randn(10, irreps_in.dim)
    head = torch.tensor([0] * 5 + [1] * 5)
    for zero_at_origin, independent in [(True, True), (False, False)]:
        block = KANNonLinearReadoutBlock(irreps_in, (heads * o3.Irreps("16x0e")).simplify(), torch.nn.functional.silu,
                                         o3.Irreps(f"{heads}x0e"), heads, zero_at_origin=zero_at_origin)
        before = block(x, head)
        with torch.no_grad():  # layer 0 reads hidden channels 16..31 (head 1) through these coefficients
            block.kan.layers[0].spline_weight[:, 16:, :].add_(1.0)
            block.kan.layers[0].base_weight[:, 16:].add_(1.0)
        after = block(x, head)
        assert bool((after[:5] - before[:5]).abs().max() <= 1e-12) == independent
        assert (after[5:] - before[5:]).abs().max() > 1e-3


# --- models ------------------------------------------------------------------------------------------

VARIANTS = [("all", "bspline"), ("all", "gaussian"), ("all", "fourier"), ("last", "bspline")]
VARIANT_IDS = [f"{p}-{b}" for p, b in VARIANTS]
# the default KAN code path (the fused ops where built) for every variant, the pure-PyTorch reference for one
WITH_PATHS = [(p, b, None) for p, b in VARIANTS] + [("all", "bspline", False)]
WITH_PATHS_IDS = VARIANT_IDS + ["all-bspline-reference"]


@pytest.mark.parametrize("placement", ["all", "last"])
def test_conversion_keeps_maces_readouts_as_the_skip_path(mace_model, placement):
    """A converted readout holds the MACE readout's weights: with the KAN branches switched off the model is MACE."""
    model = mace_kan(mace_model, placement)
    kan_blocks = [r for r in model.readouts if isinstance(r, (KANReadoutBlock, KANNonLinearReadoutBlock))]
    assert len(kan_blocks) == (len(model.readouts) if placement == "all" else 1)
    assert isinstance(model.readouts[-1], KANNonLinearReadoutBlock)
    batch = graph(water_dimer())
    e_mace, f_mace = energy_forces(mace_model, batch)
    e_kan, _ = energy_forces(model, batch)
    assert (e_kan - e_mace).abs().max() > 1e-2  # the KAN branches contribute
    with torch.no_grad():
        for _, p in kan_parameters(model):
            if p.dim() >= 2:
                p.zero_()
    e_off, f_off = energy_forces(model, batch)
    assert (e_off - e_mace).abs().max() <= 1e-12
    assert (f_off - f_mace).abs().max() <= 1e-12


def test_build_from_constructor_arguments_equals_converting_the_built_model():
    config = mace_config(atomic_inter_scale=1.3, atomic_inter_shift=-0.2)
    torch.manual_seed(8)
    built = build_mace_kan(placement="all", basis="gaussian", model_cls=modules.ScaleShiftMACE, **config)
    torch.manual_seed(8)
    converted = to_mace_kan(modules.ScaleShiftMACE(**config), placement="all", basis="gaussian", in_place=True)
    assert isinstance(built, modules.ScaleShiftMACE)
    assert [type(r) for r in built.readouts] == [KANReadoutBlock, KANNonLinearReadoutBlock]
    for (name, a), (_, b) in zip(built.state_dict().items(), converted.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("placement, basis, fused", WITH_PATHS, ids=WITH_PATHS_IDS)
def test_scripted_model_equals_eager(mace_model, placement, basis, fused):
    model = mace_kan(mace_model, placement, basis, fused)
    scripted = jit.compile(model, in_place=False)
    assert isinstance(scripted, torch.jit.ScriptModule)
    for make in SYSTEMS.values():
        batch = graph(make())
        e, f = energy_forces(model, batch)
        for _ in range(2):  # profiled, then optimised
            e_s, f_s = energy_forces(scripted, batch)
            assert (e - e_s).abs().max() <= 1e-12
            assert (f - f_s).abs().max() <= 1e-12


def test_saved_models_load_with_the_same_energies_and_forces(mace_model, tmp_path):
    """torch.save / torch.load of the module (how mace-torch saves models) and torch.jit.save / load of the scripted
    one (how MACE models are deployed)."""
    model = mace_kan(mace_model, "all", "bspline", fused=None)
    batch = graph(carbon_cell())
    e, f = energy_forces(model, batch)
    torch.save(model, tmp_path / "model.pt")
    torch.jit.save(jit.compile(model, in_place=False), tmp_path / "scripted.pt")
    for loaded in (torch.load(tmp_path / "model.pt", weights_only=False), torch.jit.load(tmp_path / "scripted.pt")):
        for _ in range(2):
            e_l, f_l = energy_forces(loaded, batch)
            assert (e - e_l).abs().max() <= 1e-12
            assert (f - f_l).abs().max() <= 1e-12


@pytest.mark.parametrize("basis", ["bspline", "gaussian", "fourier"])
def test_fused_and_reference_kan_paths_agree(mace_model, basis):
    if not fused_ops_available():
        pytest.skip("kan_mlip ops not built")
    batch = graph(carbon_cell())
    reference = energy_forces(mace_kan(mace_model, basis=basis, fused=False), batch)
    fused = energy_forces(mace_kan(mace_model, basis=basis, fused=True), batch)
    assert (reference[0] - fused[0]).abs().max() <= 1e-12 * max(1.0, reference[0].abs().max().item())
    assert (reference[1] - fused[1]).abs().max() <= 1e-12 * max(1.0, reference[1].abs().max().item())


def transformed(atoms, rotation=None, shift=None, order=None):
    atoms = atoms.copy()
    if order is not None:
        atoms = atoms[order]
    if rotation is not None:
        atoms.positions = atoms.positions @ rotation.T
        if atoms.pbc.any():
            atoms.cell = np.asarray(atoms.cell) @ rotation.T
    if shift is not None:
        atoms.positions = atoms.positions + shift
        if atoms.pbc.any():
            atoms.wrap()
    return atoms


@pytest.mark.parametrize("placement, basis", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("system", list(SYSTEMS))
def test_energy_invariant_and_forces_equivariant(mace_model, placement, basis, system):
    model = mace_kan(mace_model, placement, basis, fused=None)
    atoms = SYSTEMS[system]()
    e0, f0 = (t.detach() for t in energy_forces(model, graph(atoms)))
    torch.manual_seed(4)
    rotation = o3.rand_matrix().numpy()
    order = np.random.default_rng(0).permutation(len(atoms))
    cases = {
        "rotation": (dict(rotation=rotation), rotation, None),
        "improper rotation": (dict(rotation=-rotation), -rotation, None),
        "translation": (dict(shift=np.array([0.7, -1.3, 2.9])), None, None),
        "permutation": (dict(order=order), None, order),
        "all three": (dict(rotation=rotation, shift=np.array([-3.1, 0.4, 1.2]), order=order), rotation, order),
    }
    for name, (how, rot, perm) in cases.items():
        e1, f1 = (t.detach() for t in energy_forces(model, graph(transformed(atoms, **how))))
        expected = f0.detach().numpy()
        if perm is not None:
            expected = expected[perm]
        if rot is not None:
            expected = expected @ rot.T
        assert abs(float(e1[0] - e0[0])) <= 1e-10, name
        assert np.abs(f1.detach().numpy() - expected).max() <= 1e-10, name


@pytest.mark.parametrize("placement, basis", VARIANTS, ids=VARIANT_IDS)
def test_forces_are_minus_the_energy_gradient(mace_model, placement, basis):
    model = mace_kan(mace_model, placement, basis, fused=None)
    for make in SYSTEMS.values():
        batch = graph(make())
        _, forces = energy_forces(model, batch)
        positions = batch["positions"].detach()
        h = 1e-4  # fourth-order central differences: truncation ~h^4, rounding ~1e-16 |E| / h
        rng = np.random.default_rng(1)
        for atom, axis in [(int(a), axis) for a in rng.choice(positions.shape[0], 2, replace=False) for axis in range(3)]:
            energies = []
            for step in (2.0, 1.0, -1.0, -2.0):
                moved = positions.clone()
                moved[atom, axis] += step * h
                energies.append(energy(model, dict(batch, positions=moved)))
            fd = -(-energies[0] + 8.0 * energies[1] - 8.0 * energies[2] + energies[3]) / (12.0 * h)
            force = forces[atom, axis].item()
            assert abs(fd - force) <= 1e-8 * max(1.0, abs(force)), (atom, axis, fd, force)


@pytest.mark.parametrize("placement, basis, fused", WITH_PATHS, ids=WITH_PATHS_IDS)
def test_force_loss_gradient_wrt_kan_coefficients_matches_finite_differences(mace_model, placement, basis, fused):
    """Force training differentiates the forces (first derivatives) once more, with respect to the KAN coefficients."""
    model = mace_kan(mace_model, placement, basis, fused)
    batch = graph(carbon_cell())
    target = torch.from_numpy(np.random.default_rng(2).normal(0.0, 0.5, size=(8, 3)))

    def loss(training):  # training: forces that can be differentiated again (create_graph), as MACE trains
        _, forces = energy_forces(model, batch, training=training)
        return ((forces - target) ** 2).sum()

    params = [(name, p) for name, p in kan_parameters(model) if name.endswith(("spline_weight", "base_weight"))]
    grads = torch.autograd.grad(loss(True), [p for _, p in params])
    h = 1e-6
    checked = 0
    for (name, p), g in zip(params, grads):
        flat, gflat = p.data.view(-1), g.reshape(-1)
        for i in [int(gflat.abs().argmax())]:  # the coefficient that matters most: a gradient that cannot be 0
            assert abs(gflat[i].item()) > 1e-6, name
            old = flat[i].item()
            values = []
            for sign in (1.0, -1.0):
                flat[i] = old + sign * h
                values.append(loss(False).item())
            flat[i] = old
            fd = (values[0] - values[1]) / (2 * h)
            assert abs(fd - gflat[i].item()) <= 1e-6 * max(1.0, abs(fd)), (name, int(i), fd, gflat[i].item())
            checked += 1
    per_layer = 1 if basis == "fourier" else 2  # FourierKAN has no base branch
    assert checked == len(params) == (1 if placement == "last" else 2) * 3 * per_layer
