"""The liblammps reference-BLAS trap, measured in one run.

liblammps.so exports dgemm_/dgemv_/daxpy_...; a plugin that loads libtorch into lmp's global scope
makes torch's float64 BLAS calls bind to them. This runs the same float64 model three ways on the
71-atom Ag vacancy cell and reports the ratios:

  bare      the deployed TorchScript model called from Python (model only, ms/call)
  deepbind  LAMMPS with our plugin as shipped (RTLD_DEEPBIND shim), ms/step
  plain     LAMMPS with KAN_MLIP_NO_DEEPBIND=1 (implementation loaded into the global scope), ms/step

    python benchmarks/blas_trap.py [--steps 300] [--width 64]
"""

import argparse
import os
import platform
import tempfile
from pathlib import Path

import torch

from kan_mlip.bench.harness import ModelSize, bare_model_call, model_config
from kan_mlip.bench.lammps import loop_time, run_lammps
from kan_mlip.compiler import deploy
from kan_mlip.models.io import build_model, save_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "lammps"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = model_config("readout", "gaussian", "float64", ModelSize(num_scalar_features=args.width, mlp_width=args.width))
        src = save_model(tmp / "m.pth", cfg, build_model(cfg))
        pair = tmp / "pair.pt"
        deploy(src, pair, log=lambda *_: None)
        threads = torch.get_num_threads()
        results = {"bare": bare_model_call(pair, rep=1, reps=50)[0]}
        for mode, env in (("deepbind", "0"), ("plain", "1")):
            os.environ["KAN_MLIP_NO_DEEPBIND"] = env
            out = run_lammps(EXAMPLES / "in.ag_nvt", {"model": pair, "steps": args.steps}, cwd=tmp)
            results[mode] = loop_time(out)["ms_per_step"]
        os.environ.pop("KAN_MLIP_NO_DEEPBIND")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{threads} torch threads; float64 KAN-readout Allegro, width {args.width}, 71 atoms, {args.steps} NVT steps")
    print(f"bare model call            {results['bare']:8.2f} ms/call")
    print(f"LAMMPS, DEEPBIND (shipped) {results['deepbind']:8.2f} ms/step   ratio to bare {results['deepbind'] / results['bare']:.2f}")
    print(f"LAMMPS, plain dlopen       {results['plain']:8.2f} ms/step   ratio to bare {results['plain'] / results['bare']:.2f}")
    print(f"plain / DEEPBIND           {results['plain'] / results['deepbind']:.2f}")


if __name__ == "__main__":
    main()
