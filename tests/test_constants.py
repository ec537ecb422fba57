"""Constants that the Python side and the C++ side (the ops, the pair style, the build) each write down agree:
basis kinds, the model contract's version and metadata keys, dtype names, and the libraries' file names."""

import re
from pathlib import Path
from typing import Dict, List

import pytest

from kan_mlip.compiler import contract
from kan_mlip.compiler.deploy import DTYPES
from kan_mlip.nn import ops

ROOT = Path(__file__).resolve().parents[1]
FILES = {"kinds": "csrc/kan_kinds.h", "pair": "pair_styles/pair_allegro_kan.cpp", "shim": "pair_styles/plugin_shim.cpp",
         "cmake": "CMakeLists.txt", "ops": "python/kan_mlip/nn/ops.py"}


def sources() -> Dict[str, str]:
    return {key: (ROOT / path).read_text() for key, path in FILES.items()}


def _one(pattern: str, text: str, what: str) -> str:
    found = re.findall(pattern, text)
    assert len(found) == 1, f"{what}: expected one match of {pattern!r}, found {found}"
    return found[0]


def disagreements(src: Dict[str, str]) -> List[str]:
    """Each constant written on both sides whose values differ, as 'what: C++ value vs Python value'."""
    out = []

    def compare(what, cpp, python):
        if cpp != python:
            out.append(f"{what}: {cpp!r} (C++/CMake) vs {python!r} (Python)")

    enum = _one(r"enum\s+BasisKind\b[^{]*\{([^}]*)\}", src["kinds"], "basis kinds")
    compare("basis kinds (csrc/kan_kinds.h, nn/ops.py BASIS_KIND)",
            {name.lower(): int(v) for name, v in re.findall(r"(\w+)\s*=\s*(\d+)", enum)}, ops.BASIS_KIND)
    compare("BASE_SILU (csrc/kan_kinds.h, nn/ops.py)", int(_one(r"\bBASE_SILU\s*=\s*(\d+)", src["kinds"], "BASE_SILU")),
            ops.BASE_SILU)
    mask = int(_one(r"\bKIND_MASK\s*=\s*(\d+)", src["kinds"], "KIND_MASK"))
    compare("basis kinds fit under KIND_MASK, BASE_SILU outside it",
            all(0 <= k <= mask for k in ops.BASIS_KIND.values()) and not ops.BASE_SILU & mask, True)

    pair = src["pair"]
    compare("contract version (pair_allegro_kan.cpp, compiler/contract.py)",
            _one(r'CONTRACT_VERSION\s*=\s*"([^"]*)"', pair, "contract version"), contract.CONTRACT_VERSION)
    requested = set(re.findall(r'\{"(\w+)",\s*""\}', pair))    # the extra files torch::jit::load is asked for
    read = set(re.findall(r'files\["(\w+)"\]', pair))
    compare("metadata keys the pair style reads but does not request from torch::jit::load", read - requested, set())
    compare("metadata keys the pair style reads but kan-deploy does not write (compiler/contract.py METADATA_KEYS)",
            (read | requested) - set(contract.METADATA_KEYS), set())
    compare("model dtypes (pair_allegro_kan.cpp, compiler/deploy.py DTYPES)",
            set(re.findall(r'dtype\s*==\s*"(\w+)"', pair)), set(DTYPES))

    ops_target = _one(r"add_library\((\w+)\s+SHARED\s+csrc/kan_ops\.cpp", src["cmake"], "ops library target")
    compare("ops library (CMakeLists.txt, compiler/contract.py OPS_LIBRARY)", f"lib{ops_target}.so", contract.OPS_LIBRARY)
    compare("ops library (pair_allegro_kan.cpp, compiler/contract.py OPS_LIBRARY)",
            set(re.findall(r'"(lib\w+\.so)"', pair)), {contract.OPS_LIBRARY})
    compare("ops library (nn/ops.py loads, compiler/contract.py OPS_LIBRARY)",
            _one(r'"(lib\w+\.so)"', src["ops"], "ops library file"), contract.OPS_LIBRARY)
    pair_target = _one(r"add_library\((\w+)\s+SHARED\s+pair_styles/pair_allegro_kan\.cpp", src["cmake"], "pair style target")
    compare("pair style library (plugin_shim.cpp loads, CMakeLists.txt builds)",
            _one(r'"(lib\w+\.so)"', src["shim"], "pair style library file"), f"lib{pair_target}.so")
    return out


def test_python_and_cpp_constants_agree():
    assert disagreements(sources()) == []


@pytest.mark.parametrize("key, old, new, what", [
    ("kinds", "FOURIER = 2", "FOURIER = 3", "basis kinds"),
    ("kinds", "BASE_SILU = 8", "BASE_SILU = 16", "BASE_SILU"),
    ("kinds", "KIND_MASK = 7", "KIND_MASK = 1", "KIND_MASK"),
    ("pair", '"kan_mlip.pair.v2"', '"kan_mlip.pair.v3"', "contract version"),
    ("pair", '"cutoff_matrix"', '"cutoff_matrices"', "kan-deploy does not write"),
    ("pair", '{"device", ""}, ', "", "does not request"),
    ("pair", '"float32"', '"single"', "model dtypes"),
    ("pair", '"libkan_mlip_ops.so"', '"libkan_ops.so"', "ops library (pair_allegro_kan.cpp"),
    ("cmake", "add_library(kan_mlip_ops SHARED", "add_library(kan_ops SHARED", "ops library (CMakeLists.txt"),
    ("ops", '"libkan_mlip_ops.so"', '"libkan_ops.so"', "ops library (nn/ops.py"),
    ("shim", '"libpair_allegro_kan.so"', '"libpair_kan.so"', "pair style library"),
])
def test_a_disagreement_is_found(key, old, new, what):
    src = sources()
    assert old in src[key]
    src[key] = src[key].replace(old, new)
    found = disagreements(src)
    assert len(found) == 1 and what in found[0], found


def test_a_python_side_change_is_found(monkeypatch):
    monkeypatch.setitem(ops.BASIS_KIND, "fourier", 5)
    monkeypatch.setattr(contract, "CONTRACT_VERSION", "kan_mlip.pair.v3")
    found = disagreements(sources())
    assert len(found) == 2 and "basis kinds" in found[0] and "contract version" in found[1]
