/* pair_style allegro-kan: models deployed by kan-deploy, strictly local (Allegro) or message
   passing (NequIP).

   pair_style allegro-kan
   pair_coeff * * pair.pt Ag [O ...]     (one model element name per LAMMPS atom type, or NULL for
                                          a type left to other styles of pair_style hybrid)

   units metal, full neighbour list, newton on. The model (compiler/contract.py) takes a graph: nodes
   with types, edges with their vectors. On one MPI rank the graph is periodic: a ghost atom is its
   owner's node, so a message-passing model costs the cell whatever its receptive field. On several
   ranks the nodes are local and ghost atoms; for a message-passing model the ghost shell is as deep
   as the receptive field, and the graph holds the ghosts within L hops of a local atom and the
   edges of those within L - 1 (L: the model's message-passing layers). Energies are summed over local
   atoms, ghost forces return to their owners by reverse communication, and the global virial is the
   model's (sum over edges of -r_ij (x) dE/dr_ij). */

#ifndef KAN_MLIP_PAIR_ALLEGRO_KAN_H
#define KAN_MLIP_PAIR_ALLEGRO_KAN_H

#include "pair.h"

#include <torch/script.h>

#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairAllegroKAN : public Pair {
 public:
  PairAllegroKAN(class LAMMPS *);
  ~PairAllegroKAN() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 private:
  void allocate();
  void load_model(const std::string &path);
  void map_images_to_owners();
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
  bool log_graph = true;                  // report the first graph of a run (rank 0)
  std::vector<int> owner;                 // LAMMPS index -> local index of the atom it is an image of
  double user_cutghost = 0.0;             // comm_modify cutoff as the user left it
  double raised_cutghost = -1.0;          // the ghost cutoff this style set, -1 if none
};

}    // namespace LAMMPS_NS

#endif
