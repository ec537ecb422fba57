"""MD with a trained message-passing model in LAMMPS: the shipped NequIP-KAN for synthetic EMT Ag.

examples/models/ag_nequip_kan.pth (a NequIP with a B-spline KAN output block, trained on synthetic EMT
Ag; examples/models/README.md) is deployed and run with examples/lammps/in.ag_nequip_nve:

* NVE conserves the total energy: over 2000 steps of 1 fs at 300 K, the drift
  max_t |E_tot(t) - E_tot(0)| / N (t every 10 steps) stays below 1 meV/atom;
* 2 MPI ranks (local + ghost atoms, node features exchanged between layers) follow the same
  trajectory as 1 rank (the periodic graph): positions after 100 steps agree to 1e-8 Å.
"""

import re
import time
from pathlib import Path

import numpy as np
import pytest

from kan_mlip.ase import KANCalculator
from kan_mlip.bench.lammps import loop_time, run_lammps, thermo_table
from kan_mlip.compiler import deploy, load_deployed
from kan_mlip.data import make_ag_data
from kan_mlip.lmp_plugin import PLUGIN_DIR

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODEL = EXAMPLES / "models" / "ag_nequip_kan.pth"
NVE = EXAMPLES / "lammps" / "in.ag_nequip_nve"
N_ATOMS = 71

pytestmark = pytest.mark.skipif(not (PLUGIN_DIR / "allegro_kan_plugin.so").exists(),
                                reason="pair_style plugin not built: run `make plugin`")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("nequip_md")


@pytest.fixture(scope="module")
def pair(workdir):
    """The shipped trained model, deployed (float64, as trained)."""
    out = workdir / "ag_nequip_kan.pt"
    deploy(MODEL, out, log=lambda *_: None)
    return out


def test_shipped_model_is_a_two_layer_nequip_with_a_kan_readout(pair):
    _, meta = load_deployed(pair)
    assert meta["type_names"] == ["Ag"] and meta["model_dtype"] == "float64"
    assert meta["message_passing_layers"] == 2
    assert meta["receptive_field"] == pytest.approx(2 * meta["r_max"]) and meta["r_max"] == pytest.approx(4.5)
    assert meta["kan_blocks"] == {"readout": "bspline"}
    assert MODEL.stat().st_size < 1_000_000


def test_shipped_model_is_trained(pair):
    """On frames it never saw (another seed of the same generator) it reproduces EMT: force MAE
    within 40 meV/Å (forces there are about 0.5 eV/Å rms), energy within 40 meV/atom."""
    frames = make_ag_data(n_frames=6, temperatures=(300, 600, 900), seed=11, progress=False)
    calc = KANCalculator(pair)
    f_err, e_err, f_rms = [], [], []
    for atoms in frames:
        ref_e, ref_f = atoms.get_potential_energy(), atoms.get_forces()
        a = atoms.copy()
        a.calc = calc
        e_err.append(abs(a.get_potential_energy() - ref_e) / len(a))
        f_err.append(np.abs(a.get_forces() - ref_f).mean())
        f_rms.append(np.sqrt((ref_f ** 2).mean()))
    assert np.mean(f_err) < 0.040 < 0.2 < np.mean(f_rms), (np.mean(f_err), np.mean(f_rms))
    assert np.mean(e_err) < 0.040, np.mean(e_err)


def _energy_drift(rows):
    """(max_t |E_tot(t) - E_tot(0)| / N, |slope of a linear fit| x run length / N), eV/atom."""
    steps = np.array([r["Step"] for r in rows])
    etot = np.array([r["TotEng"] for r in rows])
    slope = np.polyfit(steps, etot, 1)[0]
    return np.abs(etot - etot[0]).max() / N_ATOMS, abs(slope) * (steps[-1] - steps[0]) / N_ATOMS


@pytest.mark.slow
def test_nve_conserves_energy_over_2000_steps(pair, workdir):
    t0 = time.perf_counter()
    out = run_lammps(NVE, {"model": pair, "steps": 2000}, cwd=workdir)
    wall = time.perf_counter() - t0
    rows = thermo_table(out)
    assert [int(r["Step"]) for r in rows] == list(range(0, 2001, 10))
    drift, fitted = _energy_drift(rows)
    timing = loop_time(out)
    print(f"NVE 2000 steps: drift max|dE|/N = {1e3 * drift:.4f} meV/atom, linear fit {1e3 * fitted:.4f} meV/atom, "
          f"{timing['ms_per_step']:.1f} ms/step, {wall:.0f} s wall")
    assert drift < 1e-3, drift
    # the input's own report (LAMMPS' max over the same rows) is the same number
    reported = re.search(r"drift over 2000 steps: .* = ([\d.eE+-]+) meV/atom", out)
    assert reported and float(reported.group(1)) == pytest.approx(1e3 * drift, abs=1e-5)
    # the atoms moved: kinetic and potential energy exchanged (equipartition from a lattice start)
    temps = np.array([r["Temp"] for r in rows])
    assert temps[0] == pytest.approx(300) and 100 < temps[len(temps) // 2:].mean() < 250
    assert "periodic graph on rank 0: 71 nodes" in out


def _final_state(pair, workdir, nprocs, steps):
    """Positions, velocities, box lengths and thermo rows after ``steps`` steps of the example input."""
    wrapper = workdir / f"in.nve_{nprocs}"
    dump = workdir / f"final_{nprocs}.dump"
    wrapper.write_text(f"include {NVE}\n"
                       f"write_dump all custom {dump} id x y z vx vy vz modify sort id format float %.17g\n")
    out = run_lammps(wrapper, {"model": pair, "steps": steps}, nprocs=nprocs, cwd=workdir)
    lines = dump.read_text().splitlines()
    box = np.array([[float(w) for w in line.split()[:2]] for line in lines[5:8]])
    d = np.loadtxt(lines[9:])
    return d[:, 1:4], d[:, 4:7], box[:, 1] - box[:, 0], thermo_table(out), out


def test_two_ranks_follow_the_one_rank_trajectory(pair, workdir):
    x1, v1, lengths, rows1, out1 = _final_state(pair, workdir, 1, 100)
    x2, v2, _, rows2, out2 = _final_state(pair, workdir, 2, 100)
    assert "periodic graph on rank 0: 71 nodes" in out1
    # ghost atoms one cutoff deep, their features exchanged between the 2 layers
    assert "exchanged between layers" in out2 and "ghost atoms within" not in out2
    assert "domain (exchanging) graph on rank 0" in out2
    assert len(x1) == len(x2) == N_ATOMS
    # create_atoms numbers atoms by rank, so pair them by position (minimum image): every atom of the
    # 2-rank run sits where one of the 1-rank run does, with its velocity
    diff = x2[:, None, :] - x1[None, :, :]
    diff -= lengths * np.round(diff / lengths)
    dist = np.linalg.norm(diff, axis=-1)
    match = dist.argmin(axis=1)
    assert sorted(match) == list(range(N_ATOMS))
    assert dist[np.arange(N_ATOMS), match].max() < 1e-8
    np.testing.assert_allclose(v2, v1[match], rtol=0, atol=1e-8)
    assert len(rows1) == len(rows2) == 11
    for a, b in zip(rows1, rows2):
        assert a["Step"] == b["Step"] and abs(a["TotEng"] - b["TotEng"]) < 1e-8 and abs(a["PotEng"] - b["PotEng"]) < 1e-8
    # and the atoms did move: the potential energy rose by tenths of an eV from the lattice start
    assert rows1[-1]["PotEng"] - rows1[0]["PotEng"] > 0.1
