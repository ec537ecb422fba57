// Node features of ghost atoms between message-passing layers: the op kan_mlip::ghost_exchange and the
// interface through which a host (pair_style allegro-kan) lends it its communication.
//
//   ghost_exchange(Tensor local, int num_nodes) -> Tensor
//
// local holds the features of the num_local local nodes (any trailing shape); the result has num_nodes
// rows, the local ones unchanged and each ghost node's row its owner's, from the host's forward
// communication. Backward is the adjoint: a ghost row's gradient is added to its owner's row by the
// host's reverse communication (on whichever rank owns it), and the local rows are returned.
//
// Without a host (Python, LAMMPS on one rank with a periodic graph) every node is local: num_nodes
// must equal local.size(0) and the op is the identity. A host registers itself for the duration of
// a model call; every MPI rank must then call the model, as each exchange is collective.

#ifndef KAN_MLIP_GHOST_EXCHANGE_H
#define KAN_MLIP_GHOST_EXCHANGE_H

#include <cstdint>

namespace kan_mlip {

class GhostExchanger {
 public:
  // rows: num_nodes x width, row-major float64. forward: fill rows [num_local, num_nodes) from the
  // owners' rows [0, num_local). reverse: add rows [num_local, num_nodes) into their owners' rows
  // (anywhere) and leave the local rows holding the sums.
  virtual void forward(double *rows, int64_t num_local, int64_t num_nodes, int64_t width) = 0;
  virtual void reverse(double *rows, int64_t num_local, int64_t num_nodes, int64_t width) = 0;

 protected:
  ~GhostExchanger() = default;    // never owned through this interface
};

// the host for the calls that follow, nullptr for none
__attribute__((visibility("default"))) void set_ghost_exchanger(GhostExchanger *exchanger);

// registers a host for one scope (a model call), clearing it when the scope ends, also by an exception
class ScopedGhostExchanger {
 public:
  explicit ScopedGhostExchanger(GhostExchanger *exchanger) { set_ghost_exchanger(exchanger); }
  ~ScopedGhostExchanger() { set_ghost_exchanger(nullptr); }
  ScopedGhostExchanger(const ScopedGhostExchanger &) = delete;
  ScopedGhostExchanger &operator=(const ScopedGhostExchanger &) = delete;
};

}    // namespace kan_mlip

#endif
