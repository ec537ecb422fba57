"""DeePMD npy data -> ase.Atoms / extended XYZ, and clear errors for broken data."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read

from kan_mlip.cli import main
from kan_mlip.data.deepmd import read_deepmd, write_deepmd


@pytest.fixture
def frames():
    out = []
    for seed in range(3):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        atoms.symbols[[1, 4]] = "Ni"
        atoms.rattle(0.05, seed=seed)
        atoms.set_cell(atoms.cell.array + np.array([[0, 0.1, 0], [0, 0, 0], [0.2, 0, 0]]), scale_atoms=True)
        atoms.calc = EMT()
        atoms.get_potential_energy()
        out.append(atoms)
    return out


def test_round_trip_keeps_every_label(frames, tmp_path):
    write_deepmd(frames, tmp_path / "sys0", ["Cu", "Ni"])
    back = read_deepmd(tmp_path)
    assert len(back) == 3
    for a, b in zip(frames, back):
        assert b.get_chemical_symbols() == a.get_chemical_symbols()
        np.testing.assert_allclose(b.positions, a.positions)
        np.testing.assert_allclose(b.cell.array, a.cell.array)
        assert abs(b.get_potential_energy() - a.get_potential_energy()) < 1e-12
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-12)
        np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-12)
        np.testing.assert_allclose(b.info["virial"], -a.get_stress(voigt=False) * a.get_volume(), atol=1e-12)


def test_cli_converts_to_extxyz(frames, tmp_path):
    write_deepmd(frames, tmp_path / "data" / "sysA", ["Cu", "Ni"])
    write_deepmd(frames[:1], tmp_path / "data" / "sysB", ["Cu", "Ni"])
    out = tmp_path / "all.extxyz"
    assert main(["convert-deepmd", str(tmp_path / "data"), "-o", str(out)]) == 0
    back = read(out, index=":")
    assert len(back) == 4 and abs(back[3].get_potential_energy() - frames[0].get_potential_energy()) < 1e-9


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_energy", "missing labels ['energy.npy']"),
        ("short_force", "force.npy has shape"),
        ("box_frames", "box.npy has shape"),
        ("bad_element", "unknown elements ['Xx']"),
        ("type_out_of_range", "type.raw uses types up to 2"),
        ("no_type_map", "type_map.raw is missing"),
    ],
)
def test_broken_data_gives_clear_errors(breakage, message, frames, tmp_path, capsys):
    system = write_deepmd(frames, tmp_path / "sys", ["Cu", "Ni"])
    if breakage == "no_energy":
        (system / "set.000" / "energy.npy").unlink()
    elif breakage == "short_force":
        np.save(system / "set.000" / "force.npy", np.zeros((3, 5)))
    elif breakage == "box_frames":  # right number of values, wrong number of frames
        np.save(system / "set.000" / "box.npy", np.zeros((9, 3)))
    elif breakage == "bad_element":
        (system / "type_map.raw").write_text("Cu\nXx\n")
    elif breakage == "type_out_of_range":
        np.savetxt(system / "type.raw", [0, 2, 0, 0, 1, 0, 0, 0], fmt="%d")
    elif breakage == "no_type_map":
        (system / "type_map.raw").unlink()
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_deepmd(tmp_path)
    assert main(["convert-deepmd", str(tmp_path), "-o", str(tmp_path / "x.extxyz")]) == 2
    assert "error:" in capsys.readouterr().err


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_deepmd(tmp_path / "nope")
    with pytest.raises(ValueError, match="no DeePMD system"):
        read_deepmd(tmp_path)
