// kan_mlip::ghost_exchange (see ghost_exchange.h): ghost nodes' features from their owners, and the
// gradients of those copies back to the owners.

#include "ghost_exchange.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <atomic>
#include <vector>

namespace kan_mlip {
namespace {

using at::Tensor;

// One host per process. Not thread-local: autograd runs the backward of CUDA tensors on its own threads.
std::atomic<GhostExchanger *> host{nullptr};

std::vector<int64_t> with_rows(const Tensor &t, int64_t rows)
{
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  shape[0] = rows;
  return shape;
}

int64_t row_width(const Tensor &t)
{
  int64_t width = 1;
  for (int64_t d = 1; d < t.dim(); d++) width *= t.size(d);
  return width;
}

// The host of this call, or nullptr where every node is local (no host: the op is the identity)
GhostExchanger *host_for(const Tensor &t, int64_t num_local, int64_t num_nodes)
{
  TORCH_CHECK(t.dim() >= 1, "kan_mlip::ghost_exchange: features need a node dimension, got a 0-d tensor");
  TORCH_CHECK(num_local <= num_nodes, "kan_mlip::ghost_exchange: ", num_local, " local rows but only ", num_nodes,
              " nodes");
  GhostExchanger *exchanger = host.load();
  TORCH_CHECK(exchanger != nullptr || num_nodes == num_local, "kan_mlip::ghost_exchange: the graph has ",
              num_nodes - num_local, " ghost nodes but nothing to exchange their features with; graphs with ghost "
              "atoms are run by pair_style allegro-kan on several MPI ranks");
  return exchanger;
}

// (num_local, ...) -> (num_nodes, ...): ghost rows from their owners
Tensor fill_ghosts(const Tensor &local, int64_t num_nodes)
{
  const int64_t num_local = local.size(0);
  GhostExchanger *exchanger = host_for(local, num_local, num_nodes);
  if (exchanger == nullptr) return local.clone();
  const int64_t width = row_width(local);
  Tensor rows = at::zeros({num_nodes, width}, local.options().dtype(at::kDouble).device(at::kCPU));
  rows.narrow(0, 0, num_local).copy_(local.reshape({num_local, width}));
  exchanger->forward(rows.data_ptr<double>(), num_local, num_nodes, width);
  return rows.to(local.options()).view(with_rows(local, num_nodes));
}

// the adjoint: (num_nodes, ...) -> (num_local, ...), each ghost row added to its owner's
Tensor return_ghosts(const Tensor &grad, int64_t num_local)
{
  const int64_t num_nodes = grad.size(0);
  GhostExchanger *exchanger = host_for(grad, num_local, num_nodes);
  if (exchanger == nullptr) return grad.clone();
  const int64_t width = row_width(grad);
  Tensor rows = grad.reshape({num_nodes, width}).to(at::kCPU, at::kDouble, false, true).contiguous();
  exchanger->reverse(rows.data_ptr<double>(), num_local, num_nodes, width);
  return rows.narrow(0, 0, num_local).to(grad.options()).view(with_rows(grad, num_local));
}

Tensor ghost_exchange_meta(const Tensor &local, int64_t num_nodes)
{
  return at::empty(with_rows(local, num_nodes), local.options());
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct GhostExchangeFn : public torch::autograd::Function<GhostExchangeFn> {
  static Tensor forward(AutogradContext *ctx, Tensor local, int64_t num_nodes)
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->saved_data["num_local"] = local.size(0);
    return fill_ghosts(local, num_nodes);
  }
  // forces need one derivative; a second (force training through LAMMPS) is not offered
  static variable_list backward(AutogradContext *ctx, variable_list grads)
  {
    TORCH_CHECK(!(at::GradMode::is_enabled() && grads[0].requires_grad()),
                "kan_mlip::ghost_exchange is differentiable once (forces), not twice");
    return {return_ghosts(grads[0], ctx->saved_data["num_local"].toInt()), Tensor()};
  }
};

Tensor ghost_exchange_autograd(const Tensor &local, int64_t num_nodes)
{
  return GhostExchangeFn::apply(local, num_nodes);
}

}    // namespace

void set_ghost_exchanger(GhostExchanger *exchanger) { host.store(exchanger); }

TORCH_LIBRARY_FRAGMENT(kan_mlip, m) { m.def("ghost_exchange(Tensor local, int num_nodes) -> Tensor"); }

TORCH_LIBRARY_IMPL(kan_mlip, CPU, m) { m.impl("ghost_exchange", fill_ghosts); }

TORCH_LIBRARY_IMPL(kan_mlip, CUDA, m) { m.impl("ghost_exchange", fill_ghosts); }

TORCH_LIBRARY_IMPL(kan_mlip, Meta, m) { m.impl("ghost_exchange", ghost_exchange_meta); }

TORCH_LIBRARY_IMPL(kan_mlip, Autograd, m) { m.impl("ghost_exchange", ghost_exchange_autograd); }

}    // namespace kan_mlip
