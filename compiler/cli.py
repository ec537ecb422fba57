"""``kan-deploy CHECKPOINT -o pair.pt``."""

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="kan-deploy",
        description="Compile a trained Allegro or NequIP model (KAN or MLP) for pair_style allegro-kan and the ASE "
                    "KANCalculator. Accepts a nequip-train checkpoint (.ckpt), a nequip package (.zip) or a "
                    "kan_mlip model.pth. The compiled model is checked against the eager model on a sample "
                    "structure before anything is written.",
    )
    parser.add_argument("model", help="trained model: .ckpt, nequip package .zip, or kan_mlip model.pth")
    parser.add_argument("-o", "--output", required=True, help="deployed file to write, e.g. pair.pt")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="precision of the deployed model (default: the model's own). A float32 model deployed "
                             "as float64 is checked against its float32 self to float32's tolerance")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device the model runs on (default: cpu)")
    args = parser.parse_args(argv)
    from .deploy import deploy

    try:
        deploy(args.model, args.output, dtype=args.dtype, device=args.device)
    except (OSError, ValueError, RuntimeError) as exc:  # OSError: an output that cannot be written
        print(f"kan-deploy: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
