/* pair_style allegro-kan: models deployed by kan-deploy, strictly local (Allegro) or message
   passing (NequIP).

   pair_style allegro-kan
   pair_coeff * * pair.pt Ag [O ...]     (one model element name per LAMMPS atom type, or NULL for
                                          a type left to other styles of pair_style hybrid)

   units metal, full neighbour list, newton on. The model (compiler/contract.py) takes a graph: nodes
   with types, edges with their vectors. On one MPI rank the graph is periodic: a ghost atom is its
   owner's node, so a message-passing model costs the cell whatever its receptive field. On several
   ranks the nodes are local atoms and the ghost atoms within a cutoff of them, with the edges of
   local atoms; a message-passing model (L layers) gets its ghost nodes' features between layers by
   forward communication, their gradients returning by reverse communication (kan_mlip::ghost_exchange,
   csrc/ghost_exchange.h). A model deployed without the exchange gets a ghost shell as deep as its
   receptive field instead: the ghosts within L hops of a local atom and the edges of those within
   L - 1. Energies are summed over local atoms, ghost forces return to their owners by reverse
   communication, and the global virial is the model's (sum over edges of -r_ij (x) dE/dr_ij). */

#ifndef KAN_MLIP_PAIR_ALLEGRO_KAN_H
#define KAN_MLIP_PAIR_ALLEGRO_KAN_H

#include "pair.h"

#include "ghost_exchange.h"

#include <torch/script.h>

#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairAllegroKAN : public Pair, public kan_mlip::GhostExchanger {
 public:
  PairAllegroKAN(class LAMMPS *);
  ~PairAllegroKAN() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

  // node features of ghost atoms between message-passing layers (kan_mlip::GhostExchanger)
  void forward(double *rows, int64_t num_local, int64_t num_nodes, int64_t width) override;
  void reverse(double *rows, int64_t num_local, int64_t num_nodes, int64_t width) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

 private:
  void allocate();
  void load_model(const std::string &path);
  void map_images_to_owners();
  void start_exchange(int64_t num_nodes, int64_t width);
  void error_non_finite(const torch::Tensor &atomic_energy, const torch::Tensor &forces,
                        const std::vector<int> &atom_of, const std::vector<int64_t> &centres,
                        const std::vector<int64_t> &neighbours, const std::vector<double> &vectors);

  torch::jit::Module model;
  torch::Dtype model_dtype = torch::kFloat64;
  torch::Device device = torch::kCPU;
  std::vector<std::string> type_names;    // model types, in model order
  std::vector<double> cutoff_matrix;      // num_types x num_types, Å
  std::vector<int> type_map;              // LAMMPS type (1-based) -> model type, -1 for NULL
  bool model_loaded = false;
  int message_passing_layers = 1;         // the model's hops: its energy reaches this many cutoffs
  double receptive_field = 0.0;           // message_passing_layers x the largest cutoff, Å
  bool periodic_graph = true;             // one rank: ghosts map onto their owners' nodes
  int exchange_width = 0;                 // floats per node the model exchanges between layers, 0: none
  bool exchanging = false;                // several ranks and a model that exchanges
  std::vector<int> atom_of;               // node -> LAMMPS index, for the exchange
  std::vector<double> exchanged;          // (nlocal + nghost) x width: what the exchange communicates
  int exchanged_width = 0;
  int exchanges_forward = 0, exchanges_reverse = 0;    // in this model call
  bool log_graph = true;                  // report the first graph of a run (rank 0)
  std::vector<int> owner;                 // LAMMPS index -> local index of the atom it is an image of
  double user_cutghost = 0.0;             // comm_modify cutoff as the user left it
  double raised_cutghost = -1.0;          // the ghost cutoff this style set, -1 if none
};

}    // namespace LAMMPS_NS

#endif
