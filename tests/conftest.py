import pytest
import torch
from ase.build import bulk

from nequip.utils.global_state import set_global_state

set_global_state()

R_MAX = 4.5

SMALL_ALLEGRO = dict(
    r_max=R_MAX,
    l_max=1,
    num_layers=2,
    num_scalar_features=8,
    num_tensor_features=4,
    radial_chemical_embed={"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": 8},
    scalar_embed_mlp_hidden_layers_width=8,
    allegro_mlp_hidden_layers_depth=1,
    allegro_mlp_hidden_layers_width=8,
    readout_mlp_hidden_layers_width=8,
    avg_num_neighbors=12.0,
    per_type_energy_shifts={"Ag": -1.5, "O": -3.0},
    per_type_energy_scales={"Ag": 0.3, "O": 0.4},
)

SMALL_NEQUIP = dict(
    r_max=R_MAX,
    l_max=1,
    num_layers=2,
    num_features=8,
    radial_mlp_depth=1,
    radial_mlp_width=8,
    readout_mlp_hidden_layers_depth=1,
    readout_mlp_hidden_layers_width=8,
    avg_num_neighbors=12.0,
    per_type_energy_shifts={"Ag": -1.5, "O": -3.0},
    per_type_energy_scales={"Ag": 0.3, "O": 0.4},
)


def build(family, variant_kwargs, model_dtype="float64", seed=7, **overrides):
    from kan_mlip.models import KANAllegroModel, KANNequIPModel

    builder, base = {"allegro": (KANAllegroModel, SMALL_ALLEGRO), "nequip": (KANNequIPModel, SMALL_NEQUIP)}[family]
    kwargs = dict(base, **variant_kwargs, **overrides)
    return builder(seed=seed, model_dtype=model_dtype, type_names=["Ag", "O"], **kwargs)


@pytest.fixture
def ag_o_cell():
    """Periodic Ag cell with a vacancy, rattled, two Ag -> O so both species and pair types appear."""
    atoms = bulk("Ag", "fcc", a=4.09, cubic=True).repeat((2, 2, 1))
    del atoms[0]
    atoms.symbols[[3, 9]] = "O"
    atoms.rattle(0.15, seed=3)
    return atoms
