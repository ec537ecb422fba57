/* pair_style allegro-kan -- see pair_allegro_kan.h and examples/lammps/README.md */

#include "pair_allegro_kan.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

#include "nlohmann/json.hpp"    // LAMMPS' bundled copy, in namespace nlohmann_lmp

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <set>
#include <unordered_map>

using namespace LAMMPS_NS;
using json = nlohmann_lmp::json;

#ifndef KAN_MLIP_VERSION
#error "KAN_MLIP_VERSION must be defined by the build"
#endif

static const char *CONTRACT_VERSION = "kan_mlip.pair.v2";

// "2.13.0" -> "2.13": files from another major.minor must be re-deployed
static std::string major_minor(const std::string &version)
{
  auto first = version.find('.');
  if (first == std::string::npos) return version;
  auto second = version.find_first_of(".+", first + 1);
  return version.substr(0, second);
}

static std::string joined(const std::vector<std::string> &words)
{
  std::string out;
  for (const auto &w : words) out += " " + w;
  return out;
}

// Every MD step torch allocates and frees the same large tensors (Allegro's tensor products: ~10 MB at
// 71 atoms). With glibc's defaults, freed blocks beyond 128 kB go back to the kernel (munmap, heap trim)
// and the next step page-faults them in again: measured ~1,500-2,800 faults per step at 71 atoms, 15-20%
// of the step. Kept in the heap instead (blocks up to glibc's 32 MB mmap maximum), a step reuses
// the last step's memory; peak RSS does not grow, as every step reaches the same peak anyway.
// KAN_MLIP_MALLOC_TUNING=0 leaves glibc's defaults.
static bool keep_freed_memory_in_heap()
{
#if defined(__GLIBC__)
  const char *env = std::getenv("KAN_MLIP_MALLOC_TUNING");
  if (env && std::strcmp(env, "0") == 0) return false;
  return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 &&
         mallopt(M_TOP_PAD, 16 << 20) == 1;
#else
  return false;
#endif
}

// a contiguous CPU float64 tensor: one pass, no torch dispatch (~1 ns per value)
static bool all_finite(const torch::Tensor &t)
{
  const double *v = t.data_ptr<double>();
  bool finite = true;
  for (int64_t k = 0; k < t.numel(); k++) finite &= std::isfinite(v[k]);
  return finite;
}

PairAllegroKAN::PairAllegroKAN(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  centroidstressflag = CENTROID_NOTAVAIL;
  // the model returns the virial of its edges: with periodic graphs ghost atoms carry no force, so
  // LAMMPS' sum of x (x) f over local and ghost atoms would miss the image offsets
  no_virial_fdotr_compute = 1;
}

PairAllegroKAN::~PairAllegroKAN()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
  // give back the ghost cutoff this style raised for a message-passing model, unless changed since
  if (raised_cutghost >= 0.0 && comm->cutghostuser == raised_cutghost) comm->cutghostuser = user_cutghost;
}

void PairAllegroKAN::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

void PairAllegroKAN::settings(int narg, char **arg)
{
  if (narg > 0) error->all(FLERR, "pair_style allegro-kan takes no arguments, got '{}'", arg[0]);
}

void PairAllegroKAN::load_model(const std::string &path)
{
  if (!std::ifstream(path).good()) error->all(FLERR, "pair_style allegro-kan: cannot open model file '{}'", path);

  std::unordered_map<std::string, std::string> extra = {
      {"contract", ""}, {"kan_mlip_version", ""}, {"torch_version", ""}, {"type_names", ""},
      {"cutoff_matrix", ""}, {"model_dtype", ""}, {"device", ""}, {"custom_op_library", ""},
      {"message_passing_layers", ""}, {"receptive_field", ""}, {"exchange_width", ""}};
  torch::jit::ExtraFilesMap files(extra.begin(), extra.end());
  try {
    model = torch::jit::load(path, torch::kCPU, files);
  } catch (const std::exception &e) {
    // first line only: torch's messages carry long C++ traces
    std::string msg = e.what();
    error->all(FLERR, "pair_style allegro-kan: '{}' is not a loadable kan-deploy model file: {}", path,
               msg.substr(0, msg.find('\n')));
  }
  if (files["contract"] != CONTRACT_VERSION)
    error->all(FLERR,
               "pair_style allegro-kan: '{}' has model contract '{}', this plugin needs '{}'; "
               "re-deploy it with this kan_mlip's kan-deploy",
               path, files["contract"], CONTRACT_VERSION);
  if (major_minor(files["kan_mlip_version"]) != major_minor(KAN_MLIP_VERSION))
    error->all(FLERR,
               "pair_style allegro-kan: '{}' was deployed by kan_mlip {}, this plugin is kan_mlip {}; "
               "re-run kan-deploy",
               path, files["kan_mlip_version"], KAN_MLIP_VERSION);
  if (major_minor(files["torch_version"]) != major_minor(TORCH_VERSION))
    error->all(FLERR,
               "pair_style allegro-kan: '{}' was deployed with torch {}, this plugin uses libtorch {}; "
               "re-run kan-deploy",
               path, files["torch_version"], TORCH_VERSION);

  try {
    type_names = json::parse(files["type_names"]).get<std::vector<std::string>>();
    auto matrix = json::parse(files["cutoff_matrix"]).get<std::vector<std::vector<double>>>();
    cutoff_matrix.clear();
    for (auto &row : matrix) {
      if (row.size() != type_names.size()) throw std::runtime_error("cutoff_matrix is not num_types x num_types");
      cutoff_matrix.insert(cutoff_matrix.end(), row.begin(), row.end());
    }
    if (matrix.size() != type_names.size()) throw std::runtime_error("cutoff_matrix is not num_types x num_types");
    message_passing_layers = json::parse(files["message_passing_layers"]).get<int>();
    receptive_field = json::parse(files["receptive_field"]).get<double>();
    if (message_passing_layers < 1 || !(receptive_field > 0.0))
      throw std::runtime_error(fmt::format("message_passing_layers {} and receptive_field {} must be positive",
                                           message_passing_layers, receptive_field));
    // absent from files deployed before the exchange existed: a ghost shell
    exchange_width = files["exchange_width"].empty() ? 0 : json::parse(files["exchange_width"]).get<int>();
    if (exchange_width < 0) throw std::runtime_error(fmt::format("exchange_width {} is negative", exchange_width));
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_style allegro-kan: '{}' has corrupt metadata: {}", path, e.what());
  }

  // the fused KAN ops are linked into this library; any other op library is unknown to us
  if (!files["custom_op_library"].empty() && files["custom_op_library"] != "libkan_mlip_ops.so")
    error->all(FLERR, "pair_style allegro-kan: '{}' needs custom op library '{}', which this plugin does not provide",
               path, files["custom_op_library"]);

  const std::string dtype = files["model_dtype"];
  if (dtype == "float64")
    model_dtype = torch::kFloat64;
  else if (dtype == "float32")
    model_dtype = torch::kFloat32;
  else
    error->all(FLERR, "pair_style allegro-kan: '{}' has unknown model_dtype '{}'", path, dtype);

  device = torch::kCPU;
  if (files["device"] == "cuda") {
    if (!torch::cuda::is_available())
      error->all(FLERR, "pair_style allegro-kan: '{}' was deployed for CUDA, but no CUDA device is available", path);
    // one GPU per rank of a node: the rank among the ranks sharing this node's memory (with
    // several nodes, the global rank would leave GPUs idle and stack ranks on others)
    MPI_Comm node;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
    int node_rank;
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_free(&node);
    device = torch::Device(torch::kCUDA, node_rank % int(torch::cuda::device_count()));
  }
  model.to(device);
  model.eval();

  // several MPI ranks on one node: one torch thread each unless the user says otherwise
  if (comm->nprocs > 1 && !std::getenv("OMP_NUM_THREADS")) at::set_num_threads(1);

  const bool kept = device.is_cpu() && keep_freed_memory_in_heap();
  if (comm->me == 0) {
    utils::logmesg(lmp, "pair_style allegro-kan: loaded '{}' ({} {} on {}, types:{})\n", path, dtype,
                   files["kan_mlip_version"], files["device"], joined(type_names));
    if (message_passing_layers > 1)
      utils::logmesg(lmp, "pair_style allegro-kan: {} message-passing layers, receptive field {:g} Å; on several "
                          "ranks {}\n", message_passing_layers, receptive_field,
                     exchange_width > 0 ? fmt::format("{} floats per ghost atom exchanged between layers", exchange_width)
                                        : std::string("a ghost shell as deep as the receptive field"));
    if (kept)
      utils::logmesg(lmp, "pair_style allegro-kan: malloc keeps freed blocks up to 32 MB in the heap "
                          "(KAN_MLIP_MALLOC_TUNING=0: glibc's defaults)\n");
  }
  model_loaded = true;
}

void PairAllegroKAN::coeff(int narg, char **arg)
{
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff for allegro-kan needs '* * model.pt' and one element name per atom type "
               "({} types): expected {} arguments, got {}",
               ntypes, 3 + ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for allegro-kan must start with '* *', got '{} {}'", arg[0], arg[1]);
  if (!allocated) allocate();

  load_model(arg[2]);

  // NULL: a type this style leaves to others (pair_style hybrid); its atoms are neither centres
  // nor neighbours of the model
  type_map.assign(ntypes + 1, -1);
  for (int itype = 1; itype <= ntypes; itype++) {
    const std::string element = arg[2 + itype];
    if (element == "NULL") continue;
    auto it = std::find(type_names.begin(), type_names.end(), element);
    if (it == type_names.end())
      error->all(FLERR,
                 "pair_coeff allegro-kan: element '{}' (atom type {}) is not in the model; model types:{} "
                 "(or NULL: a type left to other styles of pair_style hybrid)",
                 element, itype, joined(type_names));
    type_map[itype] = int(it - type_names.begin());
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = (type_map[i] >= 0 && type_map[j] >= 0);
}

void PairAllegroKAN::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "pair_style allegro-kan requires 'newton on' (newton pair on)");
  if (!model_loaded) error->all(FLERR, "pair_style allegro-kan: no model loaded (missing pair_coeff * * model.pt ...)");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style allegro-kan: the model works in eV and Å and needs 'units metal', not 'units {}'",
               update->unit_style);
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style allegro-kan requires atom IDs");
  // The model needs every pair within the cutoff. With bonds (or room for them), LAMMPS leaves 1-2, 1-3
  // or 1-4 pairs out of the neighbour list where their special_bonds lj and coul factors are both 0 (the
  // default); other factors keep them in the list (special bits, masked in compute) and the model sees
  // them in full.
  if (atom->molecular != Atom::ATOMIC && atom->bond_per_atom > 0) {
    const double *lj = force->special_lj, *coul = force->special_coul;
    for (int k = 1; k <= 3; k++)
      if (lj[k] == 0.0 && coul[k] == 0.0)
        error->all(FLERR,
                   "pair_style allegro-kan needs every pair within the cutoff, but 'special_bonds lj {} {} {} "
                   "coul {} {} {}' leaves bonded pairs out of the neighbour list; use 'special_bonds lj 1.0 1.0 1.0' "
                   "(the coul factors may stay)",
                   lj[1], lj[2], lj[3], coul[1], coul[2], coul[3]);
    if ((lj[1] != 1.0 || lj[2] != 1.0 || lj[3] != 1.0) && comm->me == 0)
      error->warning(FLERR, "pair_style allegro-kan sees bonded pairs in full: the special_bonds lj factors {} {} {} "
                            "apply to other pair styles only", lj[1], lj[2], lj[3]);
  }

  // One rank: every ghost atom is a periodic image of a local atom, and the model sees the periodic
  // graph (neighbours mapped to their owners), whatever its receptive field. Several ranks: local and
  // ghost atoms are the graph. A message-passing model either has its ghost nodes' features sent
  // between layers (comm buffers sized for them here, before LAMMPS sizes its buffers), or needs ghosts
  // within its receptive field and the neighbours of ghost atoms too.
  periodic_graph = comm->nprocs == 1;
  exchanging = !periodic_graph && message_passing_layers > 1 && exchange_width > 0;
  comm_forward = comm_reverse = exchanging ? exchange_width : 0;
  // LAMMPS sizes its buffers from the top-level pair style after this (Comm::init). Under pair_style
  // hybrid that is the hybrid style, which took its sub-styles' sizes when it was created, before
  // pair_coeff loaded the model: raise it as its own flags() would
  if (exchanging && force->pair != this) {
    force->pair->comm_forward = std::max(force->pair->comm_forward, exchange_width);
    force->pair->comm_reverse = std::max(force->pair->comm_reverse, exchange_width);
  }
  log_graph = true;
  if (!periodic_graph && message_passing_layers > 1 && !exchanging) {
    const double needed = receptive_field + neighbor->skin;
    if (raised_cutghost < 0.0 || comm->cutghostuser != raised_cutghost) user_cutghost = comm->cutghostuser;
    if (user_cutghost < needed) {
      comm->cutghostuser = raised_cutghost = needed;
      if (comm->me == 0)
        utils::logmesg(lmp, "pair_style allegro-kan: ghost atoms within {:g} Å ({} layers x {:g} Å + skin) for the "
                            "message-passing model on {} ranks\n",
                       needed, message_passing_layers, receptive_field / message_passing_layers, comm->nprocs);
    }
    // ghost atoms' lists use the same cutoffs (no ghostneigh / cutghost needed)
    neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
  } else {
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }
}

double PairAllegroKAN::init_one(int i, int j)
{
  const int n = int(type_names.size());
  return cutoff_matrix[type_map[i] * n + type_map[j]];
}

// One rank: the local atom each local or ghost atom is (an image of), by atom ID. Ghost atoms change
// only when LAMMPS rebuilds its neighbour lists.
void PairAllegroKAN::map_images_to_owners()
{
  const int nlocal = atom->nlocal, ntotal = nlocal + atom->nghost;
  if (neighbor->ago != 0 && int(owner.size()) == ntotal) return;
  const tagint *tag = atom->tag;
  std::unordered_map<tagint, int> local_of;
  local_of.reserve(nlocal);
  for (int i = 0; i < nlocal; i++) local_of[tag[i]] = i;
  owner.resize(ntotal);
  for (int i = 0; i < ntotal; i++) {
    auto it = local_of.find(tag[i]);
    if (it == local_of.end())
      error->one(FLERR, "pair_style allegro-kan: ghost atom {} is not an image of a local atom on this rank", tag[i]);
    owner[i] = it->second;
  }
}

void PairAllegroKAN::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom)
    error->all(FLERR, "pair_style allegro-kan does not compute per-atom virials (e.g. compute stress/atom)");

  const int nlocal = atom->nlocal;
  const int ntotal = nlocal + atom->nghost;
  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;
  if (periodic_graph) map_images_to_owners();

  // The graph, breadth first from the local atoms (of the model's types: NULL types are left out).
  // Edges join atoms within the per-type-pair cutoff, r_ij = x_j - x_i from LAMMPS' own coordinates.
  // One rank: a neighbour is its owner's node (ghosts are periodic images), so the local atoms are
  // all the nodes. Several ranks: a ghost atom reached at hop h becomes a node. A strictly local or
  // exchanging model takes one hop: the edges of local atoms. A ghost shell takes L: the edges of
  // atoms at hops 0 .. L-1, atoms at hop L as nodes without edges, exactly what the local energies of
  // an L-layer model depend on. Special bits of bonded pairs are masked off: the model sees every
  // pair in full (see init_style).
  std::vector<int> row_of(ntotal, -1), frontier, next;    // LAMMPS index <-> node (atom_of)
  atom_of.clear();
  for (int i = 0; i < nlocal; i++)
    if (type_map[type[i]] >= 0) {
      row_of[i] = int(atom_of.size());
      atom_of.push_back(i);
    }
  const int model_nlocal = int(atom_of.size());
  // no local atoms of the model's types: no energy, no forces (an empty subdomain). With the exchange
  // the model is called all the same: its exchanges are collective
  if (model_nlocal == 0 && !exchanging) return;

  std::vector<int64_t> centres, neighbours;
  std::vector<double> vectors;
  centres.reserve(size_t(model_nlocal) * 64);
  neighbours.reserve(size_t(model_nlocal) * 64);
  vectors.reserve(size_t(model_nlocal) * 192);
  frontier = atom_of;
  const int hops = (periodic_graph || exchanging) ? 1 : message_passing_layers;
  for (int hop = 0; hop < hops && !frontier.empty(); hop++) {
    next.clear();
    for (const int i : frontier) {
      const int *jlist = list->firstneigh[i];
      for (int jj = 0; jj < list->numneigh[i]; jj++) {
        const int j = jlist[jj] & NEIGHMASK;
        if (type_map[type[j]] < 0) continue;
        const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
        if (dx * dx + dy * dy + dz * dz >= cutsq[type[i]][type[j]]) continue;
        const int node = periodic_graph ? owner[j] : j;
        if (row_of[node] < 0) {    // a ghost atom first reached at this hop
          row_of[node] = int(atom_of.size());
          atom_of.push_back(node);
          next.push_back(node);
        }
        centres.push_back(row_of[i]);
        neighbours.push_back(row_of[node]);
        vectors.insert(vectors.end(), {dx, dy, dz});
      }
    }
    frontier.swap(next);
  }
  const int64_t nrows = int64_t(atom_of.size());
  torch::Tensor types = torch::empty({nrows}, torch::kInt64);
  auto types_a = types.accessor<int64_t, 1>();
  for (int64_t r = 0; r < nrows; r++) types_a[r] = type_map[type[atom_of[r]]];

  const int64_t nedges = int64_t(centres.size());
  torch::Tensor edge_index = torch::empty({2, nedges}, torch::kInt64);
  std::memcpy(edge_index.data_ptr<int64_t>(), centres.data(), nedges * sizeof(int64_t));
  std::memcpy(edge_index.data_ptr<int64_t>() + nedges, neighbours.data(), nedges * sizeof(int64_t));
  torch::Tensor edge_vectors = torch::from_blob(vectors.data(), {nedges, 3}, torch::kFloat64);

  if (log_graph && comm->me == 0)
    utils::logmesg(lmp, "pair_style allegro-kan: {} graph on rank 0: {} nodes ({} local atoms), {} edges\n",
                   periodic_graph ? "periodic" : (exchanging ? "domain (exchanging)" : "domain"), nrows, model_nlocal,
                   nedges);
  log_graph = false;

  std::vector<torch::jit::IValue> inputs = {edge_vectors.to(device), edge_index.to(device), types.to(device),
                                            int64_t(model_nlocal)};
  torch::Tensor atomic_energy, forces, virial;
  exchanges_forward = exchanges_reverse = 0;
  try {
    kan_mlip::ScopedGhostExchanger lend(exchanging ? this : nullptr);
    auto out = model.forward(inputs).toTuple();
    atomic_energy = out->elements()[0].toTensor().to(torch::kCPU, torch::kFloat64).contiguous();
    forces = out->elements()[1].toTensor().to(torch::kCPU, torch::kFloat64).contiguous();
    virial = out->elements()[2].toTensor().to(torch::kCPU, torch::kFloat64).contiguous();
  } catch (const std::exception &e) {
    std::string msg = e.what();
    error->one(FLERR, "pair_style allegro-kan: model evaluation failed: {}", msg.substr(0, msg.find('\n')));
  }
  // each exchange is collective: a rank that made fewer than its neighbours would leave them waiting
  if (exchanging && (exchanges_forward != message_passing_layers - 1 || exchanges_reverse != message_passing_layers - 1))
    error->one(FLERR,
               "pair_style allegro-kan: the model made {} forward and {} reverse ghost exchanges, {} of each expected "
               "({} message-passing layers)",
               exchanges_forward, exchanges_reverse, message_passing_layers - 1, message_passing_layers);
  // never hand NaN or inf to the integrator
  if (!all_finite(forces) || !all_finite(atomic_energy) || !all_finite(virial))
    error_non_finite(atomic_energy, forces, atom_of, centres, neighbours, vectors);

  // forces on ghost atoms (several ranks) return to their owners by reverse communication
  auto f_a = forces.accessor<double, 2>();
  for (int64_t r = 0; r < nrows; r++) {
    const int i = atom_of[r];
    f[i][0] += f_a[r][0];
    f[i][1] += f_a[r][1];
    f[i][2] += f_a[r][2];
  }
  auto e_a = atomic_energy.accessor<double, 1>();
  if (eflag_global)
    for (int r = 0; r < model_nlocal; r++) eng_vdwl += e_a[r];
  if (eflag_atom)
    for (int r = 0; r < model_nlocal; r++) eatom[atom_of[r]] += e_a[r];
  if (vflag_global) {
    auto w = virial.accessor<double, 1>();
    for (int k = 0; k < 6; k++) this->virial[k] += w[k];
  }
}

// ---- ghost exchange: rows of nodes <-> rows of LAMMPS atoms, which forward / reverse comm fill ----
// The comm buffer spans every local and ghost atom, nodes or not: a ghost that is no node here can
// still be what LAMMPS forwards to another rank (multi-hop swaps) or accumulates on the way back.

// a zeroed buffer of width floats per local and ghost atom
void PairAllegroKAN::start_exchange(int64_t num_nodes, int64_t width)
{
  if (num_nodes != int64_t(atom_of.size()) || width > exchange_width)
    error->one(FLERR, "pair_style allegro-kan: ghost exchange of {} nodes x {} floats, but the graph has {} nodes and "
               "the file declares {} floats (exchange_width)", num_nodes, width, atom_of.size(), exchange_width);
  exchanged.assign(size_t(atom->nlocal + atom->nghost) * width, 0.0);
  exchanged_width = int(width);
}

void PairAllegroKAN::forward(double *rows, int64_t num_local, int64_t num_nodes, int64_t width)
{
  start_exchange(num_nodes, width);
  for (int64_t r = 0; r < num_local; r++)
    std::memcpy(&exchanged[size_t(atom_of[r]) * width], rows + r * width, width * sizeof(double));
  comm->forward_comm(this, int(width));
  for (int64_t r = num_local; r < num_nodes; r++)
    std::memcpy(rows + r * width, &exchanged[size_t(atom_of[r]) * width], width * sizeof(double));
  exchanges_forward++;
}

void PairAllegroKAN::reverse(double *rows, int64_t num_local, int64_t num_nodes, int64_t width)
{
  start_exchange(num_nodes, width);
  for (int64_t r = num_local; r < num_nodes; r++)
    std::memcpy(&exchanged[size_t(atom_of[r]) * width], rows + r * width, width * sizeof(double));
  comm->reverse_comm(this, int(width));
  for (int64_t r = 0; r < num_local; r++) {
    const double *sum = &exchanged[size_t(atom_of[r]) * width];
    for (int64_t k = 0; k < width; k++) rows[r * width + k] += sum[k];
  }
  exchanges_reverse++;
}

int PairAllegroKAN::pack_forward_comm(int n, int *list, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  // features are invariant: periodic images carry them unchanged
  const size_t w = exchanged_width;
  for (int i = 0; i < n; i++) std::memcpy(buf + i * w, &exchanged[size_t(list[i]) * w], w * sizeof(double));
  return int(n * w);
}

void PairAllegroKAN::unpack_forward_comm(int n, int first, double *buf)
{
  const size_t w = exchanged_width;
  std::memcpy(&exchanged[size_t(first) * w], buf, size_t(n) * w * sizeof(double));
}

int PairAllegroKAN::pack_reverse_comm(int n, int first, double *buf)
{
  const size_t w = exchanged_width;
  std::memcpy(buf, &exchanged[size_t(first) * w], size_t(n) * w * sizeof(double));
  return int(n * w);
}

void PairAllegroKAN::unpack_reverse_comm(int n, int *list, double *buf)
{
  const size_t w = exchanged_width;
  for (int i = 0; i < n; i++) {
    double *row = &exchanged[size_t(list[i]) * w];
    for (size_t k = 0; k < w; k++) row[k] += buf[i * w + k];
  }
}

// Stops the run on this rank, naming the atoms (global IDs) whose forces or energies are not finite
// and the closest pair of atoms the model saw: atoms on top of each other are the usual cause.
void PairAllegroKAN::error_non_finite(const torch::Tensor &atomic_energy, const torch::Tensor &forces,
                                      const std::vector<int> &atom_of, const std::vector<int64_t> &centres,
                                      const std::vector<int64_t> &neighbours, const std::vector<double> &vectors)
{
  const tagint *tag = atom->tag;
  std::set<tagint> bad;    // ghosts carry their owner's ID
  auto f_ok = torch::isfinite(forces).all(1).contiguous();
  auto e_ok = torch::isfinite(atomic_energy).contiguous();
  auto f_ok_a = f_ok.accessor<bool, 1>();
  auto e_ok_a = e_ok.accessor<bool, 1>();
  for (int64_t r = 0; r < f_ok.size(0); r++)
    if (!f_ok_a[r] || (r < e_ok.size(0) && !e_ok_a[r])) bad.insert(tag[atom_of[r]]);
  std::string ids;
  int shown = 0;
  for (tagint id : bad) {
    if (++shown > 20) {
      ids += fmt::format(" ... ({} atoms)", bad.size());
      break;
    }
    ids += fmt::format(" {}", id);
  }

  std::string closest;
  double rmin2 = INFINITY;
  size_t emin = 0;
  for (size_t e = 0; e < centres.size(); e++) {
    const double *r = &vectors[3 * e];
    const double r2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
    if (r2 < rmin2) rmin2 = r2, emin = e;
  }
  if (!centres.empty())
    closest = fmt::format("; the closest pair: atoms {} and {} are {:.3f} Å apart", tag[atom_of[centres[emin]]],
                          tag[atom_of[neighbours[emin]]], std::sqrt(rmin2));
  error->one(FLERR, "pair_style allegro-kan: non-finite model energy or forces at step {} on atoms{}{}",
             update->ntimestep, ids, closest);
}
