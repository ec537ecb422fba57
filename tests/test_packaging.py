"""`pip wheel --no-build-isolation .` builds a wheel that carries the C++ ops, pair_style allegro-kan and
the shipped configs and LAMMPS inputs. That wheel alone (on PYTHONPATH, ahead of the editable install)
loads its ops, advertises its own plugin to `lmp`, and runs a deployed model in LAMMPS with the ASE
calculator's energy and forces; installed into a fresh venv, it runs the README's commands from a
folder outside the checkout."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kan_mlip.resources import EXAMPLE_FOLDERS, config_dir, copy_examples, examples_dir, find_config, known_configs

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


def test_find_config_by_name_path_or_own_folder(tmp_path):
    assert find_config("allegro_mlp") == (config_dir(), "allegro_mlp")
    assert (config_dir() / "_allegro_base.yaml").is_file() and "_allegro_base" not in known_configs()
    own = tmp_path / "mine.yaml"
    own.write_text("defaults: [_allegro_base]\n")
    assert find_config(str(own)) == (tmp_path, "mine")
    assert find_config("mine", tmp_path) == (tmp_path, "mine")
    with pytest.raises(FileNotFoundError, match="'allegro_mlpp' in .*known: .*allegro_kan_readout, allegro_mlp, "):
        find_config("allegro_mlpp")
    with pytest.raises(FileNotFoundError, match="known: mine "):
        find_config("allegro_mlp", tmp_path)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        find_config(str(tmp_path / "absent.yaml"))


def test_copy_examples_never_overwrites(tmp_path):
    shipped = sorted(p.relative_to(examples_dir()) for sub in EXAMPLE_FOLDERS
                     for p in (examples_dir() / sub).iterdir())
    assert {"configs/allegro_kan_readout.yaml", "lammps/in.ag_nvt", "lammps/in.bench_ab",
            "studies/ag_emt.yaml", "models/ag_nequip_kan.pth"} <= {str(p) for p in shipped}
    assert sorted(p.relative_to(tmp_path) for p in copy_examples(tmp_path)) == shipped
    assert copy_examples(tmp_path) == []  # identical files are kept, nothing to write
    mine = tmp_path / "configs" / "allegro_mlp.yaml"
    mine.write_text("edited\n")
    (tmp_path / "lammps" / "in.ag_nve").unlink()
    with pytest.raises(FileExistsError, match="allegro_mlp.yaml"):
        copy_examples(tmp_path)
    assert mine.read_text() == "edited\n" and not (tmp_path / "lammps" / "in.ag_nve").exists()


@pytest.fixture(scope="module")
def fresh_venv(wheel_site, tmp_path_factory):
    """A new venv with the wheel pip-installed (not editable). Its heavy dependencies (torch, nequip,
    lammps, ...) come from this interpreter's site-packages through a .pth file, whose own .pth files
    (the editable install's finder among them) Python does not run; `nequip-train` and `lmp` get
    launchers of the new venv, as pip would write them."""
    whl, _ = wheel_site
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(whl)],
                   check=True, capture_output=True)
    for script in ("nequip-train", "lmp"):
        text = Path(sys.executable).with_name(script).read_text().split("\n", 1)[1]
        (venv / "bin" / script).write_text(f"#!{python}\n{text}")
        (venv / "bin" / script).chmod(0o755)
    return venv, site


def test_fresh_venv_runs_the_readme_commands_outside_the_checkout(fresh_venv, tmp_path):
    venv, site = fresh_venv
    work = tmp_path / "work"
    work.mkdir()
    assert ROOT not in work.resolve().parents
    drop = ("PYTHONPATH", "LAMMPS_PLUGIN_PATH", "KAN_MLIP_OPS_LIBRARY", "VIRTUAL_ENV", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = os.pathsep.join([str(venv / "bin")] + [p for p in env.get("PATH", "").split(os.pathsep)
                                                        if p and Path(p).resolve() != Path(sys.executable).parent])
    env["OMP_NUM_THREADS"] = "1"

    def sh(command):
        proc = subprocess.run(command, shell=True, executable="/bin/bash", cwd=work, env=env, capture_output=True,
                              text=True)
        assert proc.returncode == 0, f"{command}\n{(proc.stdout + proc.stderr)[-3000:]}"
        return proc.stdout

    # the installed package, its deploy code and its examples; nothing of the checkout on sys.path
    info = json.loads(sh("python -c 'import json, sys, kan_mlip, kan_mlip.compiler, kan_mlip.resources as r; "
                         "print(json.dumps([kan_mlip.__file__, kan_mlip.compiler.__file__, str(r.examples_dir()), "
                         "sys.path]))'"))
    for path in info[:3]:
        assert Path(path).is_relative_to(site), path
    assert not {str(ROOT), str(ROOT / "python"), str(ROOT / "compiler")} & {str(Path(p).resolve()) for p in info[3] if p}
    assert shutil.which("kan-mlip", path=env["PATH"]) == str(venv / "bin" / "kan-mlip")

    # the README's commands, as a user runs them (tiny sizes)
    assert "study file (YAML)" in sh("kan-mlip study --help") and "--config-dir" in sh("kan-mlip demo --help")
    assert "--check" in sh("kan-bench --help")
    sh("kan-mlip make-ag-data -n 14 -o ag_emt.extxyz")
    sh("kan-mlip examples")
    assert sorted(p.name for p in (work / "examples" / "configs").iterdir()) == \
        sorted(p.name for p in (ROOT / "examples" / "configs").iterdir())
    sh("nequip-train -cp $PWD/examples/configs -cn allegro_kan_readout data_path=ag_emt.extxyz max_epochs=1")
    sh("kan-deploy outputs/allegro_kan_readout/best.ckpt -o pair.pt")
    out = sh("lmp -in examples/lammps/in.ag_nvt -var model pair.pt -var steps 20")
    assert "Loop time" in out and str(site / "kan_mlip" / "lib") in out  # the installed plugin
    sh("kan-mlip plot-kan outputs/allegro_kan_readout/best.ckpt -o kan_functions.png")
    assert (work / "kan_functions.png").stat().st_size > 0

    # the demo with the shipped config and LAMMPS inputs; its data given under the names it caches them by
    # (were they renamed, the demo would only take longer, generating them itself)
    (work / "demo").mkdir()
    for name in ("ag_emt_14_strain0.03_shear0.02.extxyz", "ag_emt_test_strain0.03_shear0.02.extxyz"):
        shutil.copyfile(work / "ag_emt.extxyz", work / "demo" / name)
    out = sh("kan-mlip demo --workdir demo --frames 14 --epochs 1 --steps 20 --npt-steps 100")
    assert "demo done" in out and (work / "demo" / "pair.pt").is_file()
