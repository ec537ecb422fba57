/* pair_style allegro-kan: strictly local (Allegro-type) models deployed by kan-deploy.

   pair_style allegro-kan
   pair_coeff * * pair.pt Ag [O ...]     (one model element name per LAMMPS atom type, or NULL for
                                          a type left to other styles of pair_style hybrid)

   units metal, full neighbour list, newton on. The model returns per-atom energies of local atoms
   and forces on local and ghost atoms; ghost forces return to their owners by reverse communication
   and the global virial comes from fdotr over local + ghost atoms. */

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
  void error_non_finite(const torch::Tensor &atomic_energy, const torch::Tensor &forces,
                        const std::vector<int> &atom_of, const std::vector<int64_t> &centres,
                        const std::vector<int64_t> &neighbours);

  torch::jit::Module model;
  torch::Dtype model_dtype = torch::kFloat64;
  torch::Device device = torch::kCPU;
  std::vector<std::string> type_names;    // model types, in model order
  std::vector<double> cutoff_matrix;      // num_types x num_types, Å
  std::vector<int> type_map;              // LAMMPS type (1-based) -> model type, -1 for NULL
  bool model_loaded = false;
};

}    // namespace LAMMPS_NS

#endif
