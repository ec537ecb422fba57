"""The deployed model's contract, shared by pair_style allegro-kan, the ASE calculator and tests.

    forward(edge_vectors, edge_index, atom_types, num_local) -> (atomic_energy, forces, virial)

    edge_vectors (E, 3)  r_ij = x_j - x_i of every edge, Å (float64; cast to the model dtype inside)
    edge_index   (2, E)  int64 node indices; row 0 = centre i, row 1 = neighbour j. Every pair within
                         the cutoff appears once per centre (full list)
    atom_types   (N,)    int64 model type index of each node; N is the number of nodes
    num_local    int     nodes [0, num_local) are the ones whose energies count

    atomic_energy (num_local,) per-node energies of those nodes (their sum is the energy)
    forces        (N, 3)       -dE/dx of every node
    virial        (6,)         sum over edges of -r_ij (x) dE/dr_ij, order xx yy zz xy xz yz (LAMMPS)

A node is an atom; the edge vectors carry the geometry. Two graphs of the same structure give the
same numbers:

* periodic: the nodes are the atoms of the cell and a neighbour across the boundary is its owner
  atom, the edge vector pointing to the image (ASE; LAMMPS on one MPI rank, where every ghost atom is
  an image of a local one). The cost is that of the cell, whatever the receptive field.
* domain: the nodes are the local atoms, then ghost atoms (LAMMPS on several ranks; the caller sums
  ghost forces onto their owners by reverse communication). A strictly local model (L = 1) needs the
  ghosts within one cutoff and the edges of local atoms only. A model with L message-passing layers
  either
  - exchanges node features (metadata ``exchange_width`` > 0: floats per node; exchange.py): the
    same graph as L = 1, and the caller lends ``kan_mlip::ghost_exchange`` its forward and reverse
    communication for the call (csrc/ghost_exchange.h), or
  - takes a ghost shell as deep as its receptive field: the ghosts within L hops of a local atom, and
    the edges of atoms within L - 1 hops (the local energies depend on exactly these).

Only plain tensors and an int cross the boundary, so an AOTInductor ``.pt2`` export can implement the
same signature. Implementations: nequip_potential.PairPotential (Allegro, NequIP), kan_mlip.mace.deploy
(MACE); files.forces_and_virial turns dE/dr into the outputs for both.
"""

# Written twice, checked equal by tests/test_constants.py: pair_styles/pair_allegro_kan.cpp reads them too
CONTRACT_VERSION = "kan_mlip.pair.v2"
# the deployed file's metadata (TorchScript extra files, JSON unless a plain string)
METADATA_KEYS = ("contract", "r_max", "cutoff_matrix", "type_names", "num_types", "model_dtype", "device",
                 "message_passing_layers", "receptive_field", "exchange_width", "kan_blocks",
                 "kan_mlip_version", "torch_version", "custom_op_library", "source")
# custom_op_library of a model that calls the fused kan_mlip::* ops (the library CMakeLists.txt builds)
OPS_LIBRARY = "libkan_mlip_ops.so"
