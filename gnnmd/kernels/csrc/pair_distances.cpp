// gnnmd::pair_distances: |r_j - r_i| (nm) for a pair list, minimum image in a periodic box.
//
// The pure-torch twin is gnnmd.neighbors.dense.displacements followed by a vector norm; this op
// replaces the gathers, the norm and, backward, the scatter-adds of the twin (the twin's backward
// is two index_add passes over the pairs, the larger part of its time on CPUs).
//   pair_distances           CPU kernel, autograd formula (C++), Meta kernel
//   pair_distances_backward  CPU kernel, Meta kernel; first derivatives only
// A pair at distance zero gets a zero gradient (as torch's vector norm gives).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "geometry.h"

namespace {

using gnnmd_geometry::Frame;
using gnnmd_geometry::Vec;

void check_pairs(const at::Tensor& positions, const at::Tensor& pairs, const at::Tensor& graph_index,
                 const c10::optional<at::Tensor>& box) {
  gnnmd_geometry::check_frame("pair_distances", positions, graph_index, box);
  TORCH_CHECK(pairs.dim() == 2 && pairs.size(0) == 2 && pairs.scalar_type() == at::kLong,
              "pair_distances: pairs must be int64 (2, E), got ", pairs.scalar_type(), " ",
              pairs.sizes());
}

template <typename real>
Frame<real> frame_of(const at::Tensor& x, const at::Tensor& graph, const c10::optional<at::Tensor>& box) {
  return {x.data_ptr<real>(), graph.data_ptr<int64_t>(), box.has_value() ? box->data_ptr<real>() : nullptr};
}

at::Tensor pair_distances_cpu(const at::Tensor& positions, const at::Tensor& pairs,
                              const at::Tensor& graph_index, const c10::optional<at::Tensor>& box) {
  check_pairs(positions, pairs, graph_index, box);
  at::Tensor x = positions.contiguous(), p = pairs.contiguous(), graph = graph_index.contiguous();
  c10::optional<at::Tensor> b = box.has_value() ? c10::optional<at::Tensor>(box->contiguous()) : c10::nullopt;
  gnnmd_geometry::check_indices("pair_distances", "pairs", p, x.size(0));
  const int64_t count = p.size(1);
  at::Tensor out = at::empty({count}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pair_distances", [&] {
    const Frame<scalar_t> frame = frame_of<scalar_t>(x, graph, b);
    const int64_t *pi = p.data_ptr<int64_t>(), *pj = pi + count;
    scalar_t* r = out.data_ptr<scalar_t>();
    at::parallel_for(0, count, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) r[n] = gnnmd_geometry::norm(frame.displacement(pi[n], pj[n]));
    });
  });
  return out;
}

at::Tensor pair_distances_backward_cpu(const at::Tensor& grad, const at::Tensor& positions,
                                       const at::Tensor& pairs, const at::Tensor& graph_index,
                                       const c10::optional<at::Tensor>& box,
                                       const at::Tensor& distances) {
  check_pairs(positions, pairs, graph_index, box);
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == pairs.size(1) && distances.sizes() == grad.sizes(),
              "pair_distances_backward: grad and distances must be (E,) with E = ", pairs.size(1),
              ", got ", grad.sizes(), " and ", distances.sizes());
  at::Tensor x = positions.contiguous(), p = pairs.contiguous(), graph = graph_index.contiguous();
  at::Tensor g = grad.contiguous().to(x.scalar_type()), r = distances.contiguous().to(x.scalar_type());
  c10::optional<at::Tensor> b = box.has_value() ? c10::optional<at::Tensor>(box->contiguous()) : c10::nullopt;
  at::Tensor out = at::zeros_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pair_distances_backward", [&] {
    const Frame<scalar_t> frame = frame_of<scalar_t>(x, graph, b);
    const int64_t count = p.size(1);
    const int64_t *pi = p.data_ptr<int64_t>(), *pj = pi + count;
    const scalar_t *gp = g.data_ptr<scalar_t>(), *rp = r.data_ptr<scalar_t>();
    scalar_t* gx = out.data_ptr<scalar_t>();
    // Serial: one pass of a few flops per pair, small next to anything that uses the distances.
    for (int64_t n = 0; n < count; ++n) {
      if (rp[n] == scalar_t(0) || gp[n] == scalar_t(0)) continue;
      const Vec<scalar_t> v = frame.displacement(pi[n], pj[n]) * (gp[n] / rp[n]);
      gnnmd_geometry::add_to(gx, pj[n], v);
      gnnmd_geometry::add_to(gx, pi[n], -v);
    }
  });
  return out;
}

at::Tensor pair_distances_meta(const at::Tensor& positions, const at::Tensor& pairs,
                               const at::Tensor& graph_index, const c10::optional<at::Tensor>& box) {
  check_pairs(positions, pairs, graph_index, box);
  return at::empty({pairs.size(1)}, positions.options());
}

at::Tensor pair_distances_backward_meta(const at::Tensor& grad, const at::Tensor& positions,
                                        const at::Tensor& pairs, const at::Tensor& graph_index,
                                        const c10::optional<at::Tensor>& box, const at::Tensor&) {
  check_pairs(positions, pairs, graph_index, box);
  return at::empty_like(positions);
}

class PairDistances : public torch::autograd::Function<PairDistances> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& positions,
                            const at::Tensor& pairs, const at::Tensor& graph_index,
                            const c10::optional<at::Tensor>& box) {
    gnnmd_geometry::require_no_box_gradient("pair_distances", box);
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("gnnmd::pair_distances", "")
                         .typed<decltype(pair_distances_cpu)>();
    at::Tensor distances = op.call(positions, pairs, graph_index, box);
    ctx->save_for_backward({positions, pairs, graph_index, box.has_value() ? *box : at::Tensor(), distances});
    return distances;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    gnnmd_geometry::require_first_derivatives("pair_distances");
    auto saved = ctx->get_saved_variables();
    c10::optional<at::Tensor> box = saved[3].defined() ? c10::optional<at::Tensor>(saved[3]) : c10::nullopt;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("gnnmd::pair_distances_backward", "")
                         .typed<decltype(pair_distances_backward_cpu)>();
    at::Tensor grad_x = op.call(grads[0], saved[0], saved[1], saved[2], box, saved[4]);
    return {grad_x, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor pair_distances_autograd(const at::Tensor& positions, const at::Tensor& pairs,
                                   const at::Tensor& graph_index, const c10::optional<at::Tensor>& box) {
  return PairDistances::apply(positions, pairs, graph_index, box);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gnnmd, m) {
  m.def("pair_distances(Tensor positions, Tensor pairs, Tensor graph_index, Tensor? box) -> Tensor");
  m.def(
      "pair_distances_backward(Tensor grad, Tensor positions, Tensor pairs, Tensor graph_index, "
      "Tensor? box, Tensor distances) -> Tensor");
}

TORCH_LIBRARY_IMPL(gnnmd, CPU, m) {
  m.impl("pair_distances", &pair_distances_cpu);
  m.impl("pair_distances_backward", &pair_distances_backward_cpu);
}

TORCH_LIBRARY_IMPL(gnnmd, Meta, m) {
  m.impl("pair_distances", &pair_distances_meta);
  m.impl("pair_distances_backward", &pair_distances_backward_meta);
}

TORCH_LIBRARY_IMPL(gnnmd, Autograd, m) {
  m.impl("pair_distances", &pair_distances_autograd);
}
