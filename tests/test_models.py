"""Every Table-1 model variant: scripting, save/load, symmetry, forces = -dE/dx, cutoff smoothness."""

import io

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import R_MAX, build
from e3nn.util.jit import script
from nequip.data import AtomicDataDict

from kan_mlip.data.graph import atoms_to_graph
from kan_mlip.models import KANAllegroModel, ScalarKAN
from kan_mlip.models.variants import ALLEGRO_VARIANTS, NEQUIP_VARIANTS
from kan_mlip.nn import KANLinear

VARIANTS = [("allegro", n, v) for n, v in ALLEGRO_VARIANTS.items()] + [("nequip", n, v) for n, v in NEQUIP_VARIANTS.items()]
IDS = [name for _, name, _ in VARIANTS]
TYPE_NAMES = ["Ag", "O"]
E, F = AtomicDataDict.TOTAL_ENERGY_KEY, AtomicDataDict.FORCE_KEY


def evaluate(model, atoms):
    out = model(atoms_to_graph(atoms, R_MAX, TYPE_NAMES))
    return out[E].detach().reshape(()).item(), out[F].detach().numpy()


def random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.fixture(scope="module", params=VARIANTS, ids=IDS)
def variant_model(request):
    family, name, kwargs = request.param
    return name, kwargs, build(family, kwargs)


def test_kan_blocks_are_where_the_variant_says(variant_model):
    name, kwargs, model = variant_model
    kan_modules = [n for n, m in model.named_modules() if isinstance(m, KANLinear)]
    if kwargs["kan_placement"] == "none":
        assert kan_modules == []
        return
    assert kan_modules
    assert all(m.basis_name == kwargs["kan_basis"] for m in model.modules() if isinstance(m, KANLinear))
    readout = "per_atom_energy_readout" if name.startswith("nequip") else "edge_readout"
    expected = {
        "readout": {readout},
        "embedding_latent": {"scalar_embed_mlp", "latents"},
        "all": {"scalar_embed_mlp", "latents", readout},
    }[kwargs["kan_placement"]]
    blocks = {part for n in kan_modules for part in n.split(".")} & {readout, "scalar_embed_mlp", "latents"}
    assert blocks == expected


def test_script_and_save_load_round_trip(variant_model, ag_o_cell):
    _, _, model = variant_model
    data = atoms_to_graph(ag_o_cell, R_MAX, TYPE_NAMES)
    eager = model(dict(data))
    scripted = script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    for m in (scripted, loaded):
        out = m(dict(data))
        torch.testing.assert_close(out[E], eager[E], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out[F], eager[F], rtol=1e-12, atol=1e-12)


def test_invariance_under_rotation_translation_permutation(variant_model, ag_o_cell):
    _, _, model = variant_model
    energy, forces = evaluate(model, ag_o_cell)
    rot = random_rotation(11)
    perm = np.random.default_rng(5).permutation(len(ag_o_cell))
    moved = Atoms(
        np.array(ag_o_cell.get_chemical_symbols())[perm],
        positions=ag_o_cell.positions[perm] @ rot.T + np.array([0.3, -1.7, 2.9]),
        cell=ag_o_cell.cell.array @ rot.T,
        pbc=True,
    )
    energy2, forces2 = evaluate(model, moved)
    assert abs(energy2 - energy) <= 1e-10 * abs(energy)
    np.testing.assert_allclose(forces2, forces[perm] @ rot.T, rtol=0, atol=1e-10 * np.abs(forces).max())


def test_forces_are_minus_finite_difference_gradient(variant_model, ag_o_cell):
    _, _, model = variant_model
    _, forces = evaluate(model, ag_o_cell)
    assert np.abs(forces).max() > 1e-3  # a model with no forces would pass trivially
    h = 1e-4
    for atom, axis in [(0, 0), (3, 1), (7, 2), (9, 0), (12, 1)]:
        energies = {}
        for step in (-2, -1, 1, 2):
            moved = ag_o_cell.copy()
            moved.positions[atom, axis] += step * h
            energies[step] = evaluate(model, moved)[0]
        # fourth-order central difference: truncation error O(h^4)
        fd = -(-energies[2] + 8 * energies[1] - 8 * energies[-1] + energies[-2]) / (12 * h)
        assert abs(fd - forces[atom, axis]) < 1e-7 + 1e-6 * abs(forces[atom, axis]), (atom, axis, fd, forces[atom, axis])


@pytest.mark.parametrize("placement", ["all", "readout"])
def test_energy_is_continuous_where_a_neighbour_crosses_the_cutoff(placement):
    """A dimer: as r -> r_max the energy must reach the isolated-atom value (the shifts)."""
    model = build("allegro", {"kan_placement": placement, "kan_basis": "bspline"})
    isolated = -1.5 - 3.0
    for r, tol in [(R_MAX - 1e-3, 1e-9), (R_MAX + 1e-3, 1e-12)]:
        dimer = Atoms("AgO", positions=[[0, 0, 0], [r, 0, 0]], cell=[30, 30, 30], pbc=False)
        energy, forces = evaluate(model, dimer)
        assert abs(energy - isolated) < tol and np.abs(forces).max() < 1e-6
    near = Atoms("AgO", positions=[[0, 0, 0], [R_MAX - 0.8, 0, 0]], cell=[30, 30, 30], pbc=False)
    assert abs(evaluate(model, near)[0] - isolated) > 1e-6  # the pair does interact inside r_max


def test_float32_model_matches_float64(ag_o_cell):
    m64 = build("allegro", ALLEGRO_VARIANTS["allegro_kan_readout"])
    m32 = build("allegro", ALLEGRO_VARIANTS["allegro_kan_readout"], model_dtype="float32")
    m32.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in m64.state_dict().items()})
    e64, f64 = evaluate(m64, ag_o_cell)
    out32 = m32(atoms_to_graph(ag_o_cell, R_MAX, TYPE_NAMES, dtype=torch.float32))
    assert all(p.dtype == torch.float32 for p in m32.parameters())  # nequip accumulates energies in float64
    assert abs(out32[E].item() - e64) < 1e-4 * max(1, abs(e64))
    np.testing.assert_allclose(out32[F].detach().numpy(), f64, atol=1e-4)


def test_training_gradients_reach_every_kan_parameter(ag_o_cell):
    """Force-matching loss: every KAN coefficient gets a nonzero gradient (double backward is live)."""
    model = build("allegro", ALLEGRO_VARIANTS["allegro_kan_all_bspline"])
    model.train()
    out = model(atoms_to_graph(ag_o_cell, R_MAX, TYPE_NAMES))
    loss = out[F].square().sum()
    kan_params = [(n, p) for n, p in model.named_parameters() if "spline_weight" in n]
    grads = torch.autograd.grad(loss, [p for _, p in kan_params])
    for (n, _), g in zip(kan_params, grads):
        assert g.abs().max() > 0, n


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kan_placement": "output"}, "kan_placement"),
        ({"kan_placement": ["readout", "radial"]}, "kan_placement"),
        ({"kan_basis": "wavelet"}, "basis"),
        ({"kan_basis": "gaussian", "kan_options": {"grid_size": 5}}, "grid_size"),
        ({"kan_basis": "bspline", "kan_options": {"grid_range": [2, 1]}}, "grid_range"),
    ],
)
def test_bad_model_options_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build("allegro", kwargs)


def test_nequip_rejects_allegro_only_placements():
    with pytest.raises(ValueError, match="kan_placement"):
        build("nequip", {"kan_placement": "all"})


def test_scalar_kan_rejects_a_field_that_does_not_exist():
    with pytest.raises(ValueError, match="'field'.*edge_featurez"):
        ScalarKAN(output_dim=1, field="edge_featurez", irreps_in={"edge_features": "8x0e"})
    with pytest.raises(ValueError, match="scalars"):
        ScalarKAN(output_dim=1, field="edge_features", irreps_in={"edge_features": "8x1o"})


def test_default_is_the_papers_best_kan_readout_gaussian():
    import inspect

    sig = inspect.signature(KANAllegroModel.__wrapped__)
    assert sig.parameters["kan_placement"].default == "readout"
    assert sig.parameters["kan_basis"].default == "gaussian"
