"""The files kan-mlip ships: nequip-train configs, LAMMPS inputs and study files.

They live in the checkout's ``examples/`` folder, which is installed as the package ``kan_mlip.examples``
(pyproject.toml), so an installed kan-mlip finds them without the source tree. ``kan-mlip examples``
copies them into a folder of one's own to edit.
"""

import filecmp
import shutil
from importlib.resources import files
from pathlib import Path
from typing import List, Optional, Tuple

CONFIG_SUFFIXES = (".yaml", ".yml")


def examples_dir() -> Path:
    """The shipped examples folder (configs/, lammps/, studies/)."""
    try:
        configs = Path(str(files("kan_mlip.examples") / "configs"))
    except ModuleNotFoundError:  # the source tree on PYTHONPATH, or an editable install older than kan_mlip.examples
        configs = Path(__file__).resolve().parents[2] / "examples" / "configs"
    if not configs.is_dir():
        raise FileNotFoundError(f"kan-mlip's configs and LAMMPS inputs are not installed (no {configs}): reinstall kan-mlip")
    return configs.parent


def config_dir() -> Path:
    """The shipped nequip-train configs, one per row of the paper's Table 1 (``nequip-train -cp``)."""
    return examples_dir() / "configs"


def lammps_input(name: str) -> Path:
    """A shipped LAMMPS input, e.g. ``in.ag_nvt``."""
    path = examples_dir() / "lammps" / name
    if not path.is_file():
        raise FileNotFoundError(f"no LAMMPS input {name} in {path.parent}")
    return path


def known_configs(directory: Optional[Path] = None) -> List[str]:
    """Config names in ``directory`` (default: the shipped ones), leaving out bases (``_*.yaml``)."""
    directory = Path(directory) if directory is not None else config_dir()
    return sorted(p.stem for p in directory.iterdir() if p.suffix in CONFIG_SUFFIXES and not p.name.startswith("_"))


def find_config(config: str, directory: Optional[Path] = None) -> Tuple[Path, str]:
    """``(config dir, config name)`` for ``nequip-train -cp DIR -cn NAME``.

    ``config`` is a config name, looked up in ``directory`` (default: the shipped configs), or a path to a
    .yaml file. Raises FileNotFoundError naming the known configs when there is no such config.
    """
    config = str(config)
    if config.endswith(CONFIG_SUFFIXES) or "/" in config:
        path = Path(config).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {config}")
        return path.parent, path.stem
    directory = (Path(directory).expanduser() if directory is not None else config_dir()).resolve()
    if not directory.is_dir():
        raise FileNotFoundError(f"config directory not found: {directory}")
    for suffix in CONFIG_SUFFIXES:
        if (directory / f"{config}{suffix}").is_file():
            return directory, config
    raise FileNotFoundError(f"no configuration '{config}' in {directory}; known: {', '.join(known_configs(directory))} "
                            "(or give the path of a .yaml config)")


# the shipped example folders: nequip-train configs, LAMMPS inputs, trained example models, study files
EXAMPLE_FOLDERS = ("configs", "lammps", "models", "studies")


def copy_examples(dest: Path) -> List[Path]:
    """Copy the shipped example folders (EXAMPLE_FOLDERS) into ``dest``; returns the files written.

    Files already there with the same content are left as they are; one that differs is an error
    (nothing is overwritten, and nothing is copied).
    """
    src, dest = examples_dir(), Path(dest)
    pairs = [(p, dest / p.relative_to(src)) for sub in EXAMPLE_FOLDERS
             for p in sorted((src / sub).iterdir()) if p.is_file()]
    changed = [str(d) for s, d in pairs if d.exists() and not (d.is_file() and filecmp.cmp(s, d, shallow=False))]
    if changed:
        raise FileExistsError(f"not overwriting files that differ from kan-mlip's: {', '.join(changed)}")
    written = []
    for s, d in pairs:
        if not d.exists():
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s, d)
            written.append(d)
    return written
