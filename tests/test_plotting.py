"""plot-kan: the learned functions of a trained model's KAN output block."""

import pytest

from kan_mlip.cli import main
from kan_mlip.models.io import build_model, save_model
from kan_mlip.plotting import kan_layers

CFG = {"_target_": "kan_mlip.models.KANAllegroModel", "seed": 1, "model_dtype": "float64", "type_names": ["Ag"],
       "r_max": 4.0, "l_max": 1, "num_layers": 1, "num_scalar_features": 8, "num_tensor_features": 4,
       "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": 8},
       "scalar_embed_mlp_hidden_layers_width": 8, "allegro_mlp_hidden_layers_width": 8,
       "readout_mlp_hidden_layers_width": 4, "avg_num_neighbors": 10.0,
       "per_type_energy_shifts": {"Ag": 0.0}, "per_type_energy_scales": {"Ag": 1.0}}


def test_plot_kan_writes_a_png_of_the_readout_functions(tmp_path):
    src = save_model(tmp_path / "m.pth", dict(CFG, kan_placement="readout", kan_basis="bspline"),
                     build_model(dict(CFG, kan_placement="readout", kan_basis="bspline")))
    out = tmp_path / "kan.png"
    assert main(["plot-kan", str(src), "-o", str(out), "--top", "4"]) == 0
    assert out.stat().st_size > 5000


def test_plot_kan_explains_a_model_without_kan_blocks(tmp_path, capsys):
    src = save_model(tmp_path / "mlp.pth", dict(CFG, kan_placement="none"), build_model(dict(CFG, kan_placement="none")))
    assert main(["plot-kan", str(src), "-o", str(tmp_path / "x.png")]) == 2
    assert "no KAN layers in its readout block" in capsys.readouterr().err
    with pytest.raises(ValueError, match="block must be one of"):
        kan_layers(build_model(dict(CFG, kan_placement="all")), "output")
