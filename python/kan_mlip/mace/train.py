"""``kan-mlip mace-train``: MACE's own training (``mace_run_train``) of a MACE-KAN.

Every ``mace_run_train`` argument is accepted and means what it means there; four more choose the KAN
readouts (``--kan_placement none`` trains plain MACE). mace-torch builds its model as usual
(``configure_model``), the readouts are converted (kan_mlip.mace.to_mace_kan) and MACE's loop trains,
evaluates, checkpoints and writes ``<name>.model``: an ordinary MACE model file, which
``MACECalculator`` and kan-deploy load (kan_mlip must be importable, as for any model with custom
blocks). Runs in the MACE environment (.venv-mace).
"""

import argparse
import contextlib
import logging
from typing import Iterator, List, Optional

from kan_mlip.nn import BASES

from .model import KAN_PLACEMENTS, to_mace_kan

KAN_OPTIONS = ("kan_placement", "kan_basis", "kan_hidden", "kan_grid_size")


def add_kan_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    group = parser.add_argument_group("KAN readouts (kan_mlip)")
    group.add_argument("--kan_placement", choices=[*KAN_PLACEMENTS, "none"], default="all",
                       help="'all': a KAN beside every readout (the paper's Figure 4), 'last': the last readout only, "
                            "'none': plain MACE")
    group.add_argument("--kan_basis", choices=sorted(BASES), default="bspline",
                       help="basis of the KAN layers (B-spline: cubic on 3 intervals, as mace-kan)")
    group.add_argument("--kan_hidden", type=str, default=None,
                       help="hidden KAN widths, comma-separated, e.g. '8,4' (default: m/2, m/4 of the KAN's input "
                            "width m: 16 -> 8 -> 4 -> 1 for MLP_irreps 16x0e, mace-kan's)")
    group.add_argument("--kan_grid_size", type=int, default=None,
                       help="B-spline grid intervals / Gaussian or Fourier functions per input (default: the basis's)")
    return parser


def kan_options(args: argparse.Namespace) -> dict:
    """to_mace_kan's keyword arguments from the parsed KAN options (ValueError naming a bad one)."""
    hidden: Optional[List[int]] = None
    if args.kan_hidden:
        try:
            hidden = [int(w) for w in str(args.kan_hidden).split(",")]
        except ValueError:
            raise ValueError(f"--kan_hidden must be comma-separated integers, got {args.kan_hidden!r}") from None
        if any(w < 1 for w in hidden):
            raise ValueError(f"--kan_hidden widths must be positive, got {args.kan_hidden!r}")
    basis_options = None
    if args.kan_grid_size is not None:
        if args.kan_grid_size < 1:
            raise ValueError(f"--kan_grid_size must be positive, got {args.kan_grid_size}")
        key = "grid_size" if args.kan_basis == "bspline" else "num_grids"
        basis_options = {key: args.kan_grid_size}
    return {"placement": args.kan_placement, "basis": args.kan_basis, "kan_hidden": hidden,
            "basis_options": basis_options}


@contextlib.contextmanager
def kan_readouts(options: dict) -> Iterator[None]:
    """Within the block, mace_run_train's configure_model returns MACE-KAN models."""
    from mace.cli import run_train

    build = run_train.configure_model

    def configure_model(*args, **kwargs):
        model, output_args = build(*args, **kwargs)
        if options["placement"] != "none":
            model = to_mace_kan(model, in_place=True, **options)
            logging.info(f"KAN readouts ({options['placement']}, {options['basis']}): "
                         f"{sum(p.numel() for p in model.parameters())} parameters in all")
        return model, output_args

    run_train.configure_model = configure_model
    try:
        yield
    finally:
        run_train.configure_model = build


def main(argv: Optional[List[str]] = None) -> int:
    from mace import tools
    from mace.cli import run_train

    parser = add_kan_arguments(tools.build_default_arg_parser())
    parser.prog = "kan-mlip mace-train"
    parser.description = __doc__.split("\n\n")[0] + " " + __doc__.split("\n\n")[1].replace("\n", " ")
    args = parser.parse_args(argv)
    try:
        options = kan_options(args)
    except ValueError as exc:
        parser.error(str(exc))
    for key in KAN_OPTIONS:
        delattr(args, key)
    with kan_readouts(options):
        run_train.run(args)
    return 0
