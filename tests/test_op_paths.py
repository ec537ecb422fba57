"""Which path of the fused CPU ops each shipped KAN layer takes (kan_mlip.nn.ops.path_counts).

The ops have a general path (a dense basis block contracted by a GEMM) and keep a specialised one only
where it buys >= 5% end to end on a shipped configuration (benchmarks/RESULTS.md, "Fused CPU op paths").
These tests pin the path of every layer shape that the example configurations and kan-bench's models
build, through a force-training step, so that a moved threshold fails here instead of silently changing
what runs (and what the other op tests cover)."""

from pathlib import Path

import pytest
import torch
import yaml

from kan_mlip.nn import KANLinear
from kan_mlip.nn.ops import BASE_SILU, BASIS_KIND, fused_ops_available, path_counts

pytestmark = pytest.mark.skipif(not fused_ops_available(), reason="the kan_mlip ops library is not built")

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"
PATHS = {"forward:gemm", "forward:bspline_wide", "forward:separate_base", "input_grad:gemm", "input_grad:bspline_wide",
         "input_grad:separate_base", "coeff_grad:gemm", "coeff_grad:separate_base", "bspline_wide:cubic_rows"}
# (in, out) of the KAN layers: examples/configs (Allegro: readout 96 -> 16 -> 1, two-body embedding and
# latents; NequIP: readout 16 -> 16 -> 1) and kan-bench's models (readout 192 -> 32 -> 1, latents 64 wide)
EXAMPLE_SHAPES = {(96, 16), (16, 1), (16, 32), (32, 32), (32, 48), (40, 32), (72, 32), (16, 16)}
BENCH_SHAPES = {(192, 32), (32, 1), (64, 64), (64, 96), (80, 64), (144, 64)}
GEMM = {"forward:gemm", "input_grad:gemm", "coeff_grad:gemm"}
EXPECTED = {  # (basis, wide output): the paths of a training step
    ("gaussian", False): GEMM,
    ("gaussian", True): GEMM,
    ("fourier", False): GEMM,
    ("fourier", True): GEMM,
    # the silu base beside the GEMM path
    ("bspline", False): GEMM | {"forward:separate_base", "input_grad:separate_base", "coeff_grad:separate_base"},
    # values and forces by bspline_wide.h (uniform cubic knots: closed-form rows), coefficients by the GEMM
    ("bspline", True): {"forward:bspline_wide", "input_grad:bspline_wide", "bspline_wide:cubic_rows",
                        "coeff_grad:gemm", "coeff_grad:separate_base"},
}


def paths_taken(fn) -> set:
    before = path_counts()
    fn()
    after = path_counts()
    return {name for name, n in after.items() if n > before[name]}


def training_step(layer, x):
    """Energy-like output, forces with create_graph, and the force loss' gradient (double backward)."""
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (dx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    ((dx * dx).sum() + y.sum()).backward()


def test_path_names_are_stable():
    assert set(path_counts()) == PATHS


@pytest.mark.parametrize("basis", ["bspline", "gaussian", "fourier"])
@pytest.mark.parametrize("shape, dtype", [(s, torch.float64) for s in sorted(EXAMPLE_SHAPES | BENCH_SHAPES)]
                         + [(s, torch.float32) for s in sorted(BENCH_SHAPES)])
def test_shipped_layer_takes_its_path(basis, shape, dtype):
    n_in, n_out = shape
    torch.manual_seed(0)
    layer = KANLinear(n_in, n_out, basis=basis, zero_at_origin=True).to(dtype)
    x = torch.randn(37, n_in, dtype=dtype)
    assert paths_taken(lambda: training_step(layer, x)) == EXPECTED[basis, n_out >= 8]
    with torch.no_grad():  # inference: the same value paths
        assert paths_taken(lambda: layer(x)) == EXPECTED[basis, n_out >= 8] & {"forward:gemm", "forward:bspline_wide",
                                                                            "forward:separate_base", "bspline_wide:cubic_rows"}


def _example_model(name: str) -> dict:
    row = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    base = yaml.safe_load((CONFIGS / f"{row['defaults'][0]}.yaml").read_text())
    model = dict(base["training_module"]["model"], **row.get("training_module", {}).get("model", {}))
    model.update(seed=1, type_names=["Ag"], r_max=4.5, avg_num_neighbors=18.0, per_type_energy_shifts={"Ag": 0.0},
                 per_type_energy_scales={"Ag": 0.5})
    return model


def test_the_shapes_above_are_those_of_the_shipped_models():
    from kan_mlip.bench.harness import ModelSize, model_config
    from kan_mlip.models import KANAllegroModel, KANNequIPModel

    def shapes(kwargs):
        kwargs = dict(kwargs)
        builder = KANAllegroModel if "Allegro" in kwargs.pop("_target_") else KANNequIPModel
        return {(m.in_features, m.out_features) for m in builder(**kwargs).modules() if isinstance(m, KANLinear)}

    examples = set()
    for name in ["allegro_kan_all_gaussian", "allegro_kan_readout", "nequip_kan_readout_gaussian"]:
        examples |= shapes(_example_model(name))
    assert examples == EXAMPLE_SHAPES
    assert shapes(model_config("all", "gaussian", "float64", ModelSize())) == BENCH_SHAPES


def test_general_path_serves_what_no_specialised_path_takes():
    """Narrow and high-order B-splines, Fourier layers with a silu base, any input width: the GEMM path
    (their numbers: tests/test_kan_ops.py)."""
    ops = torch.ops.kan_mlip
    x = torch.randn(20, 5, dtype=torch.float64)
    for basis, n_out, kw, expected in [
        ("bspline", 3, dict(spline_order=7, grid_size=4), {"forward:separate_base", "forward:gemm"}),
        ("bspline", 9, dict(spline_order=2), {"forward:bspline_wide"}),  # not cubic: de Boor's values
        ("fourier", 1, {}, {"forward:separate_base", "forward:gemm"}),
        ("gaussian", 9, {}, {"forward:gemm"}),
    ]:
        layer = KANLinear(5, n_out, basis=basis, **kw).double()
        grid, aux, order, kind = layer.basis.grid, layer.basis.aux, layer.spline_order, BASIS_KIND[basis] + BASE_SILU
        c = torch.randn(n_out, 5, layer.num_basis + 1, dtype=torch.float64)  # the silu base: one more function
        assert paths_taken(lambda: ops.kan_forward(x, c, None, grid, aux, kind, order, 0)) == expected, basis
