"""The embedded synthetic EMT Ag data set."""

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.io import read

from kan_mlip.cli import main
from kan_mlip.data import DATASET_LABEL, ag_vacancy_cell, make_ag_data


@pytest.fixture(scope="module")
def frames():
    return make_ag_data(n_frames=14, seed=3, equilibration_steps=20, progress=False)


def test_cell_is_71_atom_fcc_ag_with_one_vacancy():
    atoms = ag_vacancy_cell()
    assert len(atoms) == 71 and set(atoms.get_chemical_symbols()) == {"Ag"}
    assert np.allclose(atoms.cell.lengths(), [3 * 4.09, 3 * 4.09, 2 * 4.09])


def test_frames_are_labelled_emt_and_say_so(frames):
    assert len(frames) == 14
    temps = sorted({f.info["temperature_K"] for f in frames})
    assert temps[0] == 300 and temps[-1] == 900
    for atoms in frames[::5]:
        assert atoms.info["dataset"] == DATASET_LABEL and "EMT" in DATASET_LABEL and "not DFT" in DATASET_LABEL
        ref = atoms.copy()
        ref.calc = EMT()
        assert abs(ref.get_potential_energy() - atoms.get_potential_energy()) < 1e-9
        assert np.abs(ref.get_forces() - atoms.get_forces()).max() < 1e-9
        assert np.abs(ref.get_stress() - atoms.get_stress()).max() < 1e-9


def test_generation_is_seeded(frames):
    again = make_ag_data(n_frames=14, seed=3, equilibration_steps=20, progress=False)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(frames, again))
    other = make_ag_data(n_frames=2, seed=4, equilibration_steps=20, progress=False)
    assert not np.array_equal(other[0].positions, frames[0].positions)


def test_cli_writes_extxyz(tmp_path):
    out = tmp_path / "ag.extxyz"
    assert main(["make-ag-data", "-o", str(out), "-n", "3", "--temperatures", "500"]) == 0
    back = read(out, index=":")
    assert len(back) == 3 and back[0].info["dataset"] == DATASET_LABEL
    assert back[0].get_forces().shape == (71, 3)


@pytest.mark.parametrize("kwargs", [dict(n_frames=0), dict(temperatures=[-5])])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_ag_data(progress=False, **kwargs)
