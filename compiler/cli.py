"""``kan-deploy CHECKPOINT -o pair.pt``."""

import argparse
import sys
import zipfile


def is_mace_model_file(path) -> bool:
    """True for a mace-torch model saved whole (torch.save, mace_run_train's ``*.model``): its pickle names
    classes of ``mace.modules``. Read from the archive, nothing unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            return any(b"mace.modules" in archive.read(name) for name in pickles)
    except (OSError, zipfile.BadZipFile):
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="kan-deploy",
        description="Compile a trained Allegro, NequIP or MACE model (KAN or MLP) for pair_style allegro-kan and the "
                    "ASE KANCalculator. Accepts a nequip-train checkpoint (.ckpt), a nequip package (.zip), a "
                    "kan_mlip model.pth, or a mace-torch model file (mace_run_train's *.model; in the MACE "
                    "environment, .venv-mace). The compiled model is checked against the eager model on a "
                    "sample structure before anything is written.",
    )
    parser.add_argument("model", help="trained model: .ckpt, nequip package .zip, kan_mlip model.pth, or mace-torch .model")
    parser.add_argument("-o", "--output", required=True, help="deployed file to write, e.g. pair.pt")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="precision of the deployed model (default: the model's own). A float32 model deployed "
                             "as float64 is checked against its float32 self to float32's tolerance")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device the model runs on (default: cpu)")
    parser.add_argument("--no-ghost-exchange", dest="ghost_exchange", action="store_false",
                        help="message-passing models (NequIP) only: on several MPI ranks, give each rank a ghost shell as "
                             "deep as the receptive field instead of exchanging node features between layers through "
                             "LAMMPS communication (the default; benchmarks/RESULTS.md compares the two)")
    args = parser.parse_args(argv)
    try:
        if is_mace_model_file(args.model):
            try:
                from kan_mlip.compiler.mace_deploy import deploy_mace
            except ImportError as exc:
                raise ValueError(f"{args.model} is a mace-torch model, which deploys in the MACE environment "
                                 f"(make mace-setup; .venv-mace/bin/kan-deploy): {exc}") from exc
            deploy_mace(args.model, args.output, dtype=args.dtype, device=args.device)
            return 0
        try:
            from .deploy import deploy
        except ImportError as exc:
            raise ValueError(f"{args.model} is not a mace-torch model, and the nequip models' deploy cannot load "
                             f"here: {exc}") from exc
        deploy(args.model, args.output, dtype=args.dtype, device=args.device, ghost_exchange=args.ghost_exchange)
    except (OSError, ValueError, RuntimeError) as exc:  # OSError: an output that cannot be written
        print(f"kan-deploy: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
