"""The ops built for other CPUs give the reference's numbers.

`make setup` builds the ops with -march=native, so every machine compiles the SIMD code (csrc/simd.h:
vectors of 16, 32 or 64 bytes; 16 or 32 registers, which size the register panels of
csrc/bspline_wide.h) for its own width; this machine's build covers only one. Here the library is
built again for SSE4.2 (x86-64-v2: 2 doubles per vector) and AVX2 (x86-64-v3: 4 doubles, 16
registers) and the op tests run against each build in a subprocess (KAN_MLIP_OPS_LIBRARY; torch
registers an op namespace once per process).
"""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# values, forces and force-training gradients against the reference: every basis, both dtypes, wide
# and narrow outputs, several blocks, inputs far outside the grid, non-uniform knots, B-spline orders
SELECTED = "fused_equals_reference or non_uniform or cox_de_boor or silu_base_values or force_matching"


def cpu_flags() -> set:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


# what each level's code needs to run here (a build for a CPU this one is not would die of SIGILL)
NEEDS = {"x86-64-v2": {"sse4_2", "popcnt"}, "x86-64-v3": {"avx2", "fma", "bmi2"}}


def build_ops(arch: str, build: Path) -> Path:
    lib = build / "lib"
    cmake = shutil.which("cmake", path=str(Path(sys.executable).parent)) or shutil.which("cmake")
    generator = ["-G", "Ninja"] if shutil.which("ninja", path=str(Path(sys.executable).parent)) else []
    subprocess.run([cmake, "-S", str(ROOT), "-B", str(build), *generator, f"-DPython_EXECUTABLE={sys.executable}",
                    f"-DKAN_MLIP_PLUGIN_DIR={lib}", f"-DKAN_MLIP_ARCH={arch}", "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, capture_output=True)
    subprocess.run([cmake, "--build", str(build), "--target", "kan_mlip_ops"], check=True, capture_output=True)
    return lib / "libkan_mlip_ops.so"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 microarchitecture levels")
@pytest.mark.parametrize("arch, vector_register", [("x86-64-v2", "%xmm"), ("x86-64-v3", "%ymm")])
def test_ops_built_for_other_simd_widths_equal_the_reference(arch, vector_register, tmp_path):
    missing = NEEDS[arch] - cpu_flags()
    if missing:
        pytest.skip(f"this CPU cannot run {arch} code (no {sorted(missing)})")
    lib = build_ops(arch, tmp_path / "build")
    objdump = shutil.which("objdump")
    if objdump:  # the build really is for that width: no wider registers in our code
        code = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True).stdout
        assert vector_register in code
        assert "%zmm" not in code and (arch != "x86-64-v2" or "%ymm" not in code)
    env = dict(os.environ, KAN_MLIP_OPS_LIBRARY=str(lib))
    check = "import kan_mlip.nn.ops as o, sys; assert o.fused_ops_available(); print(o.LIBRARY)"
    loaded = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    assert loaded.returncode == 0 and loaded.stdout.strip() == str(lib), loaded.stderr
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", SELECTED,
                           str(ROOT / "tests" / "test_kan_ops.py")], env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "deselected" in proc.stdout
