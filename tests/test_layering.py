"""Dependencies between kan_mlip's parts run one way: nn -> models -> compiler (kan-deploy) -> ase (and the
pair style, C++), with data beside nn and the command-line tools (cli, study, training, bench, ...) on top.

Checked on the source (every import statement, the ones inside functions included), so a lazy import
cannot hide a cycle."""

import ast
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"nn": ROOT / "python/kan_mlip/nn", "data": ROOT / "python/kan_mlip/data",
           "models": ROOT / "python/kan_mlip/models", "compiler": ROOT / "compiler", "ase": ROOT / "python/kan_mlip/ase",
           "mace": ROOT / "python/kan_mlip/mace", "etgnn": ROOT / "python/kan_mlip/etgnn"}
# the kan_mlip parts each may import besides itself; "kan_mlip" is the package root (__version__ only)
ALLOWED = {
    "nn": set(),
    "data": set(),
    "models": {"nn"},
    "compiler": {"kan_mlip", "nn", "data", "models", "mace"},  # mace: a model family, deployed by compiler/mace_deploy.py
    "ase": {"kan_mlip", "nn", "data", "models", "compiler"},
    "mace": {"nn"},  # MACE's own environment: no nequip, so nothing that imports it
    "etgnn": {"kan_mlip", "nn"},  # a torch model of its own: Born charges, no nequip
}
# kan_mlip.nn is for environments without nequip (MACE, ETGNN): torch, numpy and the standard library only
NN_THIRD_PARTY = {"torch", "numpy"}


def imports(source: str, module: str, is_package: bool) -> Iterator[str]:
    """The absolute names of the modules ``source`` (the text of ``module``) imports, relative ones resolved;
    for ``from kan_mlip import X`` the name kan_mlip.X."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            if base == "kan_mlip":
                yield from (f"kan_mlip.{alias.name}" for alias in node.names)
            else:
                yield base


def part_of(name: str) -> str:
    """kan_mlip.compiler.deploy -> compiler; the root's own names (kan_mlip.__version__) -> kan_mlip."""
    parts = name.split(".")
    if parts[0] != "kan_mlip":
        return ""
    known = set(FOLDERS) | {"bench", "cli", "study", "training", "evaluation", "plotting", "resources", "lmp_plugin"}
    return parts[1] if len(parts) > 1 and parts[1] in known else "kan_mlip"


def violations(source: str, module: str, is_package: bool = False) -> List[str]:
    part = module.split(".")[1]
    found = []
    for name in imports(source, module, is_package):
        target = part_of(name)
        if target and target != part and target not in ALLOWED[part]:
            found.append(f"{module} imports {name} ({part} -> {target})")
        top = name.split(".")[0]
        if part == "nn" and not target and top not in NN_THIRD_PARTY and top not in sys.stdlib_module_names:
            found.append(f"{module} imports {name} (kan_mlip.nn: torch, numpy and the standard library only)")
    return found


def modules() -> Iterator[Tuple[str, Path]]:
    for part, folder in FOLDERS.items():
        for path in sorted(folder.glob("*.py")):
            yield f"kan_mlip.{part}" + ("" if path.stem == "__init__" else f".{path.stem}"), path


@pytest.mark.parametrize("module, path", list(modules()), ids=[m for m, _ in modules()])
def test_imports_go_one_way(module, path):
    assert violations(path.read_text(), module, path.stem == "__init__") == []


def test_the_package_root_imports_no_part():
    """Every part may import the root (for __version__): it must not import them back."""
    source = (ROOT / "python/kan_mlip/__init__.py").read_text()
    assert [n for n in imports(source, "kan_mlip", True) if part_of(n) not in ("", "kan_mlip")] == []


@pytest.mark.parametrize("source, module, is_package", [
    ("def __getattr__(name):\n    from ..models.scalar_kan import ScalarKAN\n", "kan_mlip.nn", True),   # nn -> models
    ("from kan_mlip import models\n", "kan_mlip.nn.kan_mlp", False),
    ("import nequip.data\n", "kan_mlip.nn.kan_linear", False),                                               # nn -> nequip
    ("def check():\n    from kan_mlip.ase.ghosts import ghost_graph\n", "kan_mlip.compiler.deploy", False),  # compiler -> ase
    ("from ..compiler import deploy\n", "kan_mlip.models.io", False),                                        # models -> compiler
    ("from kan_mlip.bench.lammps import run_lammps\n", "kan_mlip.ase.calculator", False),                   # ase -> bench
    ("from .. import cli\n", "kan_mlip.compiler.cli", False),
])
def test_an_import_against_the_direction_is_found(source, module, is_package):
    assert len(violations(source, module, is_package)) == 1


def test_allowed_imports_are_not_flagged():
    assert violations("from kan_mlip.compiler.deploy import load_deployed\nfrom .ghosts import x\n",
                      "kan_mlip.ase.calculator") == []
    assert violations("import math\nimport torch\nfrom .ops import BASIS_KIND\n", "kan_mlip.nn.kan_linear") == []
    assert violations("from kan_mlip import __version__\nfrom ..nn import KANMLP\n", "kan_mlip.compiler.deploy") == []
