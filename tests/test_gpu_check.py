"""The GPU check (tools/gpu_check.sh) and its bundle (tools/prepare_gpu_bundle.py), without a GPU.

The full dry run (the bundle installed into a fresh environment, every step on the CPU) is
`make gpu-dry-run`; these tests hold its parts: the help, the clear stop without a GPU, the bundle's
requirement walk, wheel trimming and size check, what the GPU runner can bring back, and the
parsing of LAMMPS logs, nvcc reports and test results."""

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
sys.path.insert(0, str(TOOLS))

import gpu_check  # noqa: E402
import gpu_dry_run  # noqa: E402
import gpu_lammps  # noqa: E402
import prepare_gpu_bundle as bundle  # noqa: E402


def test_help_lists_every_step_option_and_output():
    out = subprocess.run(["bash", str(TOOLS / "gpu_check.sh"), "--python", sys.executable, "--help"],
                         capture_output=True, text=True, check=True).stdout
    for step in gpu_check.STEPS:
        assert f"\n  {step} " in out, step
    for flag in ("--cpu", "--quick", "--bundle", "--out", "--work", "--python", "--budget", "--only", "--skip",
                 "--basis", "--dtypes", "--replicas", "--replicas-f64"):
        assert flag in out, flag
    for name in ("summary.md", "summary.json", "table4.md", "lammps.json", "checks.json", "ops_bench.md",
                 "ops_bench.json", "logs.tar.gz"):
        assert name in out, name
    for script in ("gpu_ops.py", "gpu_lammps.py", "prepare_gpu_bundle.py", "gpu_dry_run.py"):
        proc = subprocess.run([sys.executable, str(TOOLS / script), *(["check"] if script == "gpu_ops.py" else []),
                               "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage" in proc.stdout, (script, proc.stderr[-500:])


def test_unknown_step_is_refused():
    with pytest.raises(SystemExit):
        gpu_check.parse(["--only", "probe,lamps"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_missing_gpu_stops_at_once_with_exit_3_and_says_so(tmp_path):
    proc = subprocess.run(["bash", str(TOOLS / "gpu_check.sh"), "--python", sys.executable, "--out",
                           str(tmp_path / "out"), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == gpu_check.NO_GPU_EXIT
    assert "no usable CUDA GPU" in proc.stderr and "--cpu" in proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "no_gpu"
    assert summary["steps"]["probe"]["status"] == "failed"
    assert all(summary["steps"][s]["status"] == "skipped" for s in gpu_check.STEPS[1:])
    assert "No GPU" in (tmp_path / "out" / "summary.md").read_text()
    assert not gpu_dry_run.output_problems(tmp_path / "out")


def test_missing_python_is_named(tmp_path):
    proc = subprocess.run(["bash", str(TOOLS / "gpu_check.sh"), "--python", str(tmp_path / "no-python")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no Python" in proc.stderr


def dist(name, version, requires=(), pure=True):
    return SimpleNamespace(version=version, metadata={"Name": name}, requires=list(requires),
                           read_text=lambda f: "Root-Is-Purelib: true\nTag: py3-none-any\n" if pure else
                           "Root-Is-Purelib: false\nTag: cp312-cp312-manylinux_2_28_x86_64\n")


def test_closure_carries_what_the_machine_lacks_and_stops_at_its_packages():
    installed = {bundle.normalize(d.metadata["Name"]): d for d in [
        dist("nequip", "0.19.1", ["torch>=2.2", "ase", "e3nn<0.7.0,>=0.6.0", "hydra-core",
                                  'importlib_metadata; python_version < "3.10"', "lightning!=2.6.2,>=2.6"]),
        dist("ase", "3.29.0", ["numpy>=1.21", "scipy"]),
        dist("e3nn", "0.6.0", ["opt_einsum_fx>=0.1.4"]),
        dist("hydra_core", "1.3.8", ["omegaconf<2.4,>=2.2"]),
        dist("omegaconf", "2.3.1", ["PyYAML>=5.1.0"]),
        dist("lammps", "2025.7.22.4.0", ['mpich; extra == "mpi"'], pure=False),
        dist("mpich", "5.0.2", [], pure=False),
    ]}
    machine = {"torch", "numpy", "scipy", "pyyaml", "e3nn", "lightning", "opt-einsum-fx"}
    carry, on_machine = bundle.closure(["nequip==0.19.1", "lammps[mpi]==2025.7.22.4.0", "numpy"], installed,
                                       machine, "3.12")
    assert set(carry) == {"nequip", "ase", "e3nn", "hydra-core", "omegaconf", "lammps", "mpich"}
    assert carry["e3nn"]["reason"]  # on the machine, carried all the same (nequip's range)
    assert "importlib-metadata" not in carry and "importlib-metadata" not in on_machine  # a marker false on 3.12
    assert on_machine["lightning"] == ["lightning!=2.6.2,>=2.6 (nequip 0.19.1)"]
    assert "torch" in on_machine and "pyyaml" in on_machine
    # a version that does not meet a requirement stops the walk with a message
    installed["ase"] = dist("ase", "3.20.0")
    with pytest.raises(SystemExit, match="ase 3.20.0 does not meet"):
        bundle.closure(["ase>=3.23"], installed, machine, "3.12")
    with pytest.raises(SystemExit, match="not installed"):
        bundle.closure(["nothere"], installed, machine, "3.12")


def make_wheel(path: Path, files: dict):
    with zipfile.ZipFile(path, "w") as z:
        record = []
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            z.writestr(info, data)
            record.append(bundle.record_line(name, data))
        z.writestr("pkg-1.0.dist-info/RECORD", "\n".join(record + ["pkg-1.0.dist-info/RECORD,,"]) + "\n")


def test_trimmed_wheel_keeps_matching_files_with_a_true_record_and_modes(tmp_path):
    src, dst = tmp_path / "pkg-1.0-py3-none-any.whl", tmp_path / "out" / "pkg-1.0-py3-none-any.whl"
    make_wheel(src, {"pkg/__init__.py": (b"x = 1\n", 0o644), "pkg/lmp": (b"\x7fELF" + b"0" * 1000, 0o755),
                     "pkg/share/potentials/big.eam": (b"1" * 50000, 0o644),
                     "pkg-1.0.dist-info/METADATA": (b"Name: pkg\nVersion: 1.0\n", 0o644)})
    info = bundle.trim_wheel(src, dst, [r"pkg/[^/]+$", r"pkg-1\.0\.dist-info/"])
    assert info["dropped_files"] == 1 and info["dropped_bytes"] == 50000 and info["kept_files"] == 3
    with zipfile.ZipFile(dst) as z:
        names = set(z.namelist())
        assert names == {"pkg/__init__.py", "pkg/lmp", "pkg-1.0.dist-info/METADATA", "pkg-1.0.dist-info/RECORD"}
        assert (z.getinfo("pkg/lmp").external_attr >> 16) & 0o111  # lmp stays executable
        rows = [line.split(",") for line in z.read("pkg-1.0.dist-info/RECORD").decode().splitlines()]
        assert {r[0] for r in rows} == names
        for name, digest, size in rows:
            if name.endswith("RECORD"):
                assert digest == size == ""
                continue
            data = z.read(name)
            assert int(size) == len(data)
            assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def git_tree(tmp_path, sizes: dict, ignored=()):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("".join(f"/{p}/\n" for p in ignored))
    for name, size in sizes.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"0" * size)


def test_size_check_counts_the_tree_and_the_bundle_once(tmp_path):
    mib = 2**20
    git_tree(tmp_path, {"a.py": mib, "sub/b.txt": 2 * mib, ".gpu-bundle/wheels/x.whl": 3 * mib,
                        "build/big.o": 50 * mib}, ignored=[".gpu-bundle", "build"])
    s = bundle.size_report(tmp_path, tmp_path / ".gpu-bundle", limit_mib=64)
    assert s["bundle_ignored_by_git"] and s["fits"]
    assert abs(s["bundle_mib"] - 3) < 1e-9
    assert abs(s["tree_mib"] - 3) < 0.01  # a.py, sub/b.txt, .gitignore; build/ is ignored and stays behind
    assert not bundle.size_report(tmp_path, tmp_path / ".gpu-bundle", limit_mib=5.5)["fits"]
    # a bundle git does not ignore travels once, as the carried folder
    (tmp_path / ".gitignore").write_text("/build/\n")
    s = bundle.size_report(tmp_path, tmp_path / ".gpu-bundle", limit_mib=64)
    assert not s["bundle_ignored_by_git"] and abs(s["total_mib"] - 6) < 0.01


def test_output_rules_of_the_device_tool(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("summary.md", "summary.json", "table4.md", "lammps.json", "checks.json", "ops_bench.md",
                 "ops_bench.json", "logs.tar.gz"):
        (out / name).write_text("x")
    assert gpu_dry_run.output_problems(out) == []
    (out / "a" / "b" / "c").mkdir(parents=True)
    (out / "a" / "b" / "c" / "deep.txt").write_text("x")
    (out / "bad name.txt").write_text("x")
    problems = " ".join(gpu_dry_run.output_problems(out))
    assert "more than 2 folders down" in problems and "bad name.txt" in problems and "10 files" in problems


LOG = """LAMMPS (22 Jul 2025 - Update 4)
Per MPI rank memory allocation (min/avg/max) = 3.1 | 3.1 | 3.1 Mbytes
   Step          Temp          E_pair         E_mol          TotEng         Press
         0   300           -12.5            0             -9.8           1520.25
        20   290.1         -12.4            0             -9.8           1500.1
Loop time of 0.5 on 1 procs for 20 steps with 71 atoms

   Step          Temp          E_pair         E_mol          TotEng         Press
        20   290.1         -12.4            0             -9.8           1500.1
       220   301.0         -12.6            0             -9.8           1490.0
Loop time of 1.64 on 1 procs for 200 steps with 71 atoms
"""


def test_lammps_log_gives_the_timed_run_and_step_zero():
    got = gpu_lammps.parse_log(LOG)
    assert got["ms_per_step"] == pytest.approx(8.2) and got["timed_steps"] == 200 and got["natoms"] == 71
    assert got["loop_s"] == pytest.approx(2.14)
    assert got["step0"]["Step"] == 0 and got["step0"]["E_pair"] == -12.5 and got["step0"]["Press"] == 1520.25
    assert got["lammps_version"].startswith("LAMMPS (22 Jul 2025")
    assert gpu_check.first_thermo(LOG)["Press"] == 1520.25
    with pytest.raises(RuntimeError, match="Loop time"):
        gpu_lammps.parse_log("LAMMPS (x)\nERROR: nothing ran\n")


def test_process_tree_includes_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        tree = gpu_lammps.descendants(os.getpid())
        assert os.getpid() in tree and child.pid in tree
        assert gpu_lammps.vm_hwm_mb(os.getpid()) > 10
    finally:
        child.kill()
        child.wait()


def test_ptxas_report_and_junit_counts(tmp_path):
    # nvcc 13.0's -Xptxas -v on csrc/cuda/kan_ops_cuda.cu for sm_90 (the second kernel's spills made up)
    text = """ptxas info    : 324 bytes gmem
ptxas info    : Compiling entry function '_ZN8kan_mlip4cuda17coeff_grad_kernelIfEEvNS0_7ProblemIT_EE' for 'sm_90'
ptxas info    : Function properties for _ZN8kan_mlip4cuda17coeff_grad_kernelIfEEvNS0_7ProblemIT_EE
    208 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 96 registers, used 1 barriers, 208 bytes cumulative stack size
ptxas info    : Compile time = 371.089 ms
ptxas info    : Compiling entry function '_ZN8kan_mlip4cuda17input_grad_kernelIdEEvNS0_7ProblemIT_EE' for 'sm_90'
ptxas info    : Function properties for _ZN8kan_mlip4cuda17input_grad_kernelIdEEvNS0_7ProblemIT_EE
    976 bytes stack frame, 24 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 255 registers, used 0 barriers, 976 bytes cumulative stack size
ptxas info    : Compile time = 990.733 ms
ptxas info    : Function properties for __internal_trig_reduction_slowpathd
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
"""
    p = gpu_check.ptxas_report(text)
    assert p["kernels"] == 2 and p["max_registers"] == 255 and p["max_stack_frame"] == 976
    assert p["spilling"] == ["input_grad_kernel<double>"]
    assert p["per_kernel"][0] == {"kernel": "coeff_grad_kernel<float>", "arch": "sm_90", "registers": 96,
                                  "stack_frame": 208, "spill_stores": 0, "spill_loads": 0}
    xml = tmp_path / "r.xml"
    xml.write_text('<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="2" tests="9"/></testsuites>')
    assert gpu_check.junit_counts(xml) == {"tests": 9, "failures": 1, "errors": 0, "skipped": 2, "passed": 6}
    assert gpu_check.junit_counts(tmp_path / "missing.xml")["tests"] == 0


def test_table4_puts_each_size_in_a_column_with_the_ratio_to_the_mlp():
    c = SimpleNamespace(device="cuda", args=SimpleNamespace(basis="gaussian"),
                        results={"machine": {"gpu": {"name": "GPU", "memory_gib": 80}, "torch": "t", "python": "3.12"}})
    rec = lambda name, n, ms, mb: {"config": name, "dtype": "float32", "natoms": n, "mode": "hosted", "status": "ok",  # noqa: E731
                                   "ms_per_step": ms, "torch_peak_allocated_mb": mb, "process_gpu_mb": mb + 500}
    records = [rec("mlp", 71, 8.0, 100), rec("kan_readout", 71, 9.0, 110), rec("mlp", 568, 10.0, 400),
               {"config": "kan_readout", "dtype": "float32", "natoms": 568, "mode": "hosted", "status": "failed",
                "error": "boom"}]
    text = gpu_check.table4(records, c)
    mlp = next(line for line in text.splitlines() if line.startswith("| MLP"))
    kan = next(line for line in text.splitlines() if line.startswith("| KAN output block"))
    assert mlp.split("|")[1:4] == [" MLP (Allegro) ", " 8.00 ", " 10.00 "]
    assert kan.split("|")[2:5] == [" 9.00 ", " failed ", " 1.125 "]
    assert "8.22" in text  # the paper's numbers beside ours


def test_a_failed_required_step_stops_the_rest_unless_it_left_what_they_need(tmp_path):
    def run(build_error):
        c = gpu_check.Check(gpu_check.parse(["--cpu", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "w")]))
        c.step("probe", lambda: "fine", 1)
        c.step("build", lambda: (_ for _ in ()).throw(build_error), 1)
        c.step("tests", lambda: "ran", 1)
        c.write_outputs()
        return c.summary

    summary = run(gpu_check.StepFailed("no CUDA kernels", blocking=False))
    assert summary["steps"]["build"]["status"] == "failed" and summary["steps"]["tests"]["status"] == "ok"
    assert summary["status"] == "failed"
    summary = run(gpu_check.StepFailed("cmake failed"))
    assert summary["steps"]["tests"] == {"status": "skipped", "seconds": 0.0, "detail": "not run: build failed"}
    # a step that does not fit in what is left of the budget is skipped, a required one never
    c = gpu_check.Check(gpu_check.parse(["--cpu", "--budget", "5", "--out", str(tmp_path / "o2"), "--work", str(tmp_path / "w2")]))
    c.step("build", lambda: "built", 100)
    c.step("lammps", lambda: "ran", 100)
    assert c.summary["steps"]["build"]["status"] == "ok"
    assert c.summary["steps"]["lammps"]["status"] == "skipped" and "budget" in c.summary["steps"]["lammps"]["detail"]
