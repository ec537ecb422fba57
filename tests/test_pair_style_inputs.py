"""pair_style allegro-kan on inputs a new user writes: units, atoms on top of each other, bonded
systems (special_bonds) and types left to other styles of pair_style hybrid (NULL)."""

import re

import numpy as np
import pytest
from ase.io import write
from ase.neighborlist import neighbor_list

from kan_mlip.ase import KANCalculator
from kan_mlip.bench.lammps import LammpsError, run_lammps, thermo_table
from kan_mlip.compiler import deploy
from kan_mlip.data import ag_vacancy_cell
from kan_mlip.models.io import build_model, save_model
from test_deploy_lammps import (  # noqa: F401  (workdir: fixture, pytestmark: skip without the plugin)
    _expect_lammps_error, _pair_coeff_input, lammps_single_point, model_config, pytestmark, workdir)


@pytest.fixture(scope="module")
def pair(workdir):
    cfg = model_config(("Ag",))
    src = save_model(workdir / "Ag.pth", cfg, build_model(cfg))
    out = workdir / "Ag.pt"
    deploy(src, out, dtype="float64", log=lambda *_: None)
    return out


def rattled_cell():
    atoms = ag_vacancy_cell()
    atoms.rattle(0.1, seed=4)
    atoms.wrap()
    return atoms


def single_point(workdir, tag, setup, model_lines, thermo="pe", nprocs=1):
    """`run 0` of an input: its last thermo row, the dump's (id-sorted) forces and per-atom energies, the output."""
    dump = workdir / f"{tag}.dump"
    inp = workdir / f"in.{tag}"
    inp.write_text(f"""units metal
boundary p p p
{setup}
{model_lines}
compute pe all pe/atom
thermo_style custom step {thermo}
thermo_modify format float %.17g
dump d all custom 1 {dump} id fx fy fz c_pe
dump_modify d format float %.17g sort id
run 0
""")
    out = run_lammps(inp, nprocs=nprocs, cwd=workdir)
    d = np.loadtxt(dump, skiprows=9)
    return thermo_table(out)[-1], d[:, 1:4], d[:, 4], out


# ---- units: the model works in eV and Å ----

@pytest.mark.parametrize("units", ["real", "si"])
def test_units_other_than_metal_are_refused(units, pair, workdir):
    inp = _pair_coeff_input(workdir, f"pair_coeff * * {pair} Ag", f"units {units}\n", tag=f"units_{units}")
    _expect_lammps_error(inp, workdir, "needs 'units metal'", f"not 'units {units}'")


# ---- non-finite model output never reaches the integrator ----

@pytest.mark.parametrize("nprocs", [1, 2])
def test_atoms_on_top_of_each_other_stop_the_run_naming_them(nprocs, pair, workdir):
    atoms = rattled_cell()
    atoms.positions[16] = atoms.positions[5]  # atom IDs 6 and 17
    with pytest.raises(LammpsError) as info:
        lammps_single_point(atoms, pair, ("Ag",), workdir, nprocs=nprocs, tag=f"overlap_{nprocs}")
    message = str(info.value)
    assert "ERROR" in message and "exit -" not in message, message  # an error, not a signal
    assert "non-finite model energy or forces at step 0" in message, message
    named = re.search(r"on atoms([\d ]+)", message).group(1).split()
    assert {"6", "17"} <= set(named), message
    assert re.search(r"atoms (6 and 17|17 and 6) are 0\.000 Å apart", message), message


# ---- bonded systems: the model needs every pair within the cutoff ----

def write_bonded_data(atoms, path, bonds):
    """atom_style full data with the given bonds (pairs of atom indices)."""
    lengths = np.diag(atoms.cell.array)
    lines = ["Ag in atom_style full", "", f"{len(atoms)} atoms", f"{len(bonds)} bonds", "1 atom types",
             f"{int(len(bonds) > 0)} bond types", ""]
    lines += [f"0.0 {length:.17g} {lo}lo {lo}hi" for length, lo in zip(lengths, "xyz")]
    lines += ["", "Masses", "", "1 107.8682", "", "Atoms # full", ""]
    lines += [f"{k + 1} 1 1 0.0 {x:.17g} {y:.17g} {z:.17g}" for k, (x, y, z) in enumerate(atoms.positions)]
    if bonds:
        lines += ["", "Bonds", ""] + [f"{n + 1} 1 {a + 1} {b + 1}" for n, (a, b) in enumerate(bonds)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def bonded(pair, workdir):
    """The rattled cell with bonds between neighbouring atoms (so 1-2, 1-3 and 1-4 pairs exist), and
    the reference: the same atoms in atom_style atomic."""
    atoms = rattled_cell()
    i, j = neighbor_list("ij", atoms, 3.1)
    bonds = [(a, b) for a, b in zip(i, j) if a < b][::4]
    assert len(bonds) > 20
    data = workdir / "bonded.data"
    write_bonded_data(atoms, data, bonds)
    return data, lammps_single_point(atoms, pair, ("Ag",), workdir, tag="unbonded")


def bonded_setup(data, special, bonds=True):
    return f"atom_style full\nread_data {data}\n{special}\n" + ("bond_style zero\nbond_coeff *" if bonds else "")


@pytest.mark.parametrize("special", ["", "special_bonds lj/coul 0.0 1.0 1.0", "special_bonds charmm"])
def test_bonded_pairs_left_out_of_the_neighbour_list_are_refused(special, bonded, pair, workdir):
    data, _ = bonded
    inp = workdir / "in.bonded_bad"
    inp.write_text(f"units metal\nboundary p p p\n{bonded_setup(data, special)}\n"
                   f"pair_style allegro-kan\npair_coeff * * {pair} Ag\nrun 0\n")
    _expect_lammps_error(inp, workdir, "leaves bonded pairs out of the neighbour list", "special_bonds lj 1.0 1.0 1.0")


@pytest.mark.parametrize("special, warned", [
    ("special_bonds lj/coul 1.0 1.0 1.0", False),
    # the other factors keep bonded pairs in the list, with special bits in their indices
    ("special_bonds lj 1.0 1.0 1.0 coul 0.0 0.0 0.0", False),
    ("special_bonds lj/coul 1.0 1.0 0.5", True),
    ("special_bonds lj 0.0 0.0 0.0 coul 1.0 1.0 1.0", True),
])
def test_bonded_system_sees_every_pair_like_the_atomic_one(special, warned, bonded, pair, workdir):
    data, (e_ref, f_ref, ei_ref, _) = bonded
    row, f, ei, out = single_point(workdir, "bonded", bonded_setup(data, special),
                                   f"pair_style allegro-kan\npair_coeff * * {pair} Ag")
    assert abs(row["PotEng"] - e_ref) < 1e-10
    np.testing.assert_allclose(f, f_ref, atol=1e-10)
    np.testing.assert_allclose(ei, ei_ref, atol=1e-10)
    assert ("allegro-kan sees bonded pairs in full" in out) == warned


def test_atom_style_full_without_bonds_needs_no_special_bonds(bonded, pair, workdir):
    _, (e_ref, f_ref, _, _) = bonded
    data = workdir / "full_no_bonds.data"
    write_bonded_data(rattled_cell(), data, [])
    row, f, _, _ = single_point(workdir, "full_no_bonds", bonded_setup(data, "", bonds=False),
                                f"pair_style allegro-kan\npair_coeff * * {pair} Ag")
    assert abs(row["PotEng"] - e_ref) < 1e-10
    np.testing.assert_allclose(f, f_ref, atol=1e-10)


# ---- NULL: a type left to another style of pair_style hybrid ----

LJ = {(1, 2): (0.01, 2.5), (2, 2): (0.02, 2.4)}  # (epsilon eV, sigma Å) of lj/cut for type pairs with Cu
LJ_CUT = 5.0


def lj_reference(atoms, types):
    """Energy and forces of lj/cut (unshifted) on the pairs that involve a type-2 atom."""
    i, j, d, D = neighbor_list("ijdD", atoms, LJ_CUT)
    keep = (types[i] == 2) | (types[j] == 2)
    i, j, d, D = i[keep], j[keep], d[keep], D[keep]
    pairs = [tuple(sorted(p)) for p in zip(types[i], types[j])]
    eps = np.array([LJ[p][0] for p in pairs])
    sigma = np.array([LJ[p][1] for p in pairs])
    s6 = (sigma / d) ** 6
    energy = 0.5 * np.sum(4 * eps * (s6 * s6 - s6))  # the full list counts each pair twice
    dE_dd = 4 * eps * (-12 * s6 * s6 + 6 * s6) / d
    forces = np.zeros((len(atoms), 3))
    np.add.at(forces, i, (dE_dd / d)[:, None] * D)  # D = r_j - r_i
    return energy, forces


@pytest.fixture(scope="module")
def nequip_pair(workdir):
    """A 2-layer NequIP-KAN model: on several ranks its ghost atoms bring their neighbours (ghostneigh)."""
    from test_message_passing import nequip_config

    cfg = nequip_config(("Ag",), kan_placement="readout", kan_basis="gaussian")
    src = save_model(workdir / "Ag_nequip.pth", cfg, build_model(cfg))
    out = workdir / "Ag_nequip.pt"
    deploy(src, out, dtype="float64", log=lambda *_: None)
    return out


@pytest.mark.parametrize("family", ["allegro", "nequip"])
@pytest.mark.parametrize("nprocs", [1, 2])
def test_null_type_is_left_to_the_other_hybrid_style(nprocs, family, pair, nequip_pair, workdir):
    pair = {"allegro": pair, "nequip": nequip_pair}[family]
    atoms = rattled_cell()
    cu = [3, 10, 20, 33, 40, 55, 68]
    atoms.symbols[cu] = "Cu"
    types = np.where(np.array(atoms.get_chemical_symbols()) == "Ag", 1, 2)
    data = workdir / "ag_cu.data"
    write(data, atoms, format="lammps-data", specorder=["Ag", "Cu"], masses=True, atom_style="atomic")
    model = (f"pair_style hybrid/overlay allegro-kan lj/cut {LJ_CUT}\npair_coeff * * allegro-kan {pair} Ag NULL\n"
             + "".join(f"pair_coeff {a} {b} lj/cut {e} {s}\n" for (a, b), (e, s) in LJ.items())
             + "compute kan all pair allegro-kan\ncompute lj all pair lj/cut")
    row, f, _, _ = single_point(workdir, f"null_{family}_{nprocs}", f"atom_style atomic\nread_data {data}", model,
                             thermo="pe c_kan c_lj", nprocs=nprocs)

    ag = atoms[types == 1]  # allegro-kan sees the Ag atoms alone
    ag.calc = KANCalculator(pair)
    e_lj, f_lj = lj_reference(atoms, types)
    assert abs(row["c_kan"] - ag.get_potential_energy()) < 1e-8
    assert abs(row["c_lj"] - e_lj) < 1e-8 and abs(e_lj) > 1e-3
    assert abs(row["PotEng"] - (row["c_kan"] + row["c_lj"])) < 1e-8
    f_kan = f - f_lj
    np.testing.assert_allclose(f_kan[types == 1], ag.get_forces(), atol=1e-8)
    np.testing.assert_allclose(f_kan[types == 2], 0.0, atol=1e-10)  # Cu atoms get no allegro-kan force


def test_null_type_without_another_style_is_an_error(pair, workdir):
    atoms = rattled_cell()
    atoms.symbols[[3, 10]] = "Cu"
    data = workdir / "ag_cu_alone.data"
    write(data, atoms, format="lammps-data", specorder=["Ag", "Cu"], masses=True, atom_style="atomic")
    inp = workdir / "in.null_alone"
    inp.write_text(f"units metal\natom_style atomic\nboundary p p p\nread_data {data}\n"
                   f"pair_style allegro-kan\npair_coeff * * {pair} Ag NULL\nrun 0\n")
    _expect_lammps_error(inp, workdir, "All pair coeffs are not set")
