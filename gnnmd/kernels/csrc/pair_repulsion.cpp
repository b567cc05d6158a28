// gnnmd::pair_repulsion: the non-bonded repulsion prior of every graph (kJ/mol) from pair distances.
//
// E = eps [(sigma/r)^6 - (sigma/r_c)^6] for r < r_c (without `shift`: eps (sigma/r)^6), else 0; the
// twin is gnnmd.nn.priors.repulsion.Repulsion (sigma nm, eps kJ/mol). Pairs at or beyond the
// cutoff contribute nothing, so a caller may pass a Verlet list without filtering it. A pair's
// parameters are the row of its sorted prior-type pair (key a P + b, a <= b), looked up in a dense
// P x P table built per call. The energy of a pair goes to the graph of its first bead.
//   pair_repulsion          CPU kernel, Meta kernel, autograd formula (C++): energies (G,)
//   pair_repulsion_forward  CPU kernel, Meta kernel: (energies (G,), dE/dr (E,))
// First derivatives only.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "geometry.h"

namespace {

using Result = std::tuple<at::Tensor, at::Tensor>;

void check_inputs(const at::Tensor& distances, const at::Tensor& pairs, const at::Tensor& graph_index,
                  const at::Tensor& bead_prior_types, const at::Tensor& keys, const at::Tensor& sigma,
                  const at::Tensor& epsilon) {
  TORCH_CHECK(pairs.dim() == 2 && pairs.size(0) == 2 && pairs.scalar_type() == at::kLong,
              "pair_repulsion: pairs must be int64 (2, E), got ", pairs.scalar_type(), " ", pairs.sizes());
  TORCH_CHECK(distances.dim() == 1 && distances.size(0) == pairs.size(1) &&
                  (distances.scalar_type() == at::kFloat || distances.scalar_type() == at::kDouble),
              "pair_repulsion: distances must be float32 or float64 (E,) with E = ", pairs.size(1),
              ", got ", distances.scalar_type(), " ", distances.sizes());
  TORCH_CHECK(graph_index.dim() == 1 && bead_prior_types.sizes() == graph_index.sizes(),
              "pair_repulsion: graph_index and bead_prior_types must both be (N,), got ",
              graph_index.sizes(), " and ", bead_prior_types.sizes());
  TORCH_CHECK(keys.dim() == 1 && sigma.sizes() == keys.sizes() && epsilon.sizes() == keys.sizes() &&
                  sigma.scalar_type() == distances.scalar_type() &&
                  epsilon.scalar_type() == distances.scalar_type(),
              "pair_repulsion: keys, sigma and epsilon must be (K,) alike, sigma and epsilon in the "
              "distances' dtype; got ", keys.sizes(), ", ", sigma.sizes(), " ", sigma.scalar_type(), ", ",
              epsilon.sizes(), " ", epsilon.scalar_type());
}

// rows[a P + b]: the parameter row of prior types (a, b) in either order, -1 where there is none.
std::vector<int64_t> row_table(const at::Tensor& keys, int64_t P) {
  std::vector<int64_t> rows(P * P, -1);
  const int64_t* k = keys.data_ptr<int64_t>();
  for (int64_t r = 0; r < keys.numel(); ++r) {
    const int64_t a = k[r] / P, b = k[r] % P;
    TORCH_CHECK(k[r] >= 0 && a < P, "pair_repulsion: key ", k[r], " is not a pair of ", P, " prior types");
    rows[a * P + b] = rows[b * P + a] = r;
  }
  return rows;
}

Result pair_repulsion_forward_cpu(const at::Tensor& distances, const at::Tensor& pairs,
                                  const at::Tensor& graph_index, int64_t num_graphs,
                                  const at::Tensor& bead_prior_types, int64_t num_prior_types,
                                  const at::Tensor& keys, const at::Tensor& sigma, const at::Tensor& epsilon,
                                  double cutoff, bool shift) {
  check_inputs(distances, pairs, graph_index, bead_prior_types, keys, sigma, epsilon);
  at::Tensor r = distances.contiguous(), p = pairs.contiguous(), graph = graph_index.contiguous();
  at::Tensor types = bead_prior_types.contiguous(), table_keys = keys.contiguous();
  gnnmd_geometry::check_indices("pair_repulsion", "pairs", p, graph.size(0));
  gnnmd_geometry::check_indices("pair_repulsion", "graph_index", graph, num_graphs);
  gnnmd_geometry::check_indices("pair_repulsion", "bead_prior_types", types, num_prior_types);
  const std::vector<int64_t> rows = row_table(table_keys, num_prior_types);
  at::Tensor energy = at::zeros({num_graphs}, r.options()), gradient = at::empty_like(r);
  AT_DISPATCH_FLOATING_TYPES(r.scalar_type(), "pair_repulsion", [&] {
    at::Tensor s = sigma.contiguous(), e = epsilon.contiguous();
    const scalar_t *rp = r.data_ptr<scalar_t>(), *sp = s.data_ptr<scalar_t>(), *ep = e.data_ptr<scalar_t>();
    const int64_t count = p.size(1), *pi = p.data_ptr<int64_t>(), *pj = pi + count;
    const int64_t *t = types.data_ptr<int64_t>(), *g = graph.data_ptr<int64_t>();
    scalar_t *out = energy.data_ptr<scalar_t>(), *slope = gradient.data_ptr<scalar_t>();
    const scalar_t rc = static_cast<scalar_t>(cutoff);
    // Serial: a few flops per pair, and every pair adds into its graph's energy.
    for (int64_t n = 0; n < count; ++n) {
      slope[n] = 0;
      if (!(rp[n] < rc)) continue;
      const int64_t row = rows[t[pi[n]] * num_prior_types + t[pj[n]]];
      TORCH_CHECK(row >= 0, "pair_repulsion: pair ", n, " (beads ", pi[n], ", ", pj[n],
                  ") has no parameters for its prior types ", t[pi[n]], ", ", t[pj[n]]);
      const scalar_t q = sp[row] / rp[n], q2 = q * q, inner = q2 * q2 * q2;
      scalar_t value = ep[row] * inner;
      if (shift) {
        const scalar_t o = sp[row] / rc, o2 = o * o;
        value -= ep[row] * o2 * o2 * o2;
      }
      out[g[pi[n]]] += value;
      slope[n] = -6 * ep[row] * inner / rp[n];
    }
  });
  return {energy, gradient};
}

Result pair_repulsion_forward_meta(const at::Tensor& distances, const at::Tensor& pairs,
                                   const at::Tensor& graph_index, int64_t num_graphs,
                                   const at::Tensor& bead_prior_types, int64_t, const at::Tensor& keys,
                                   const at::Tensor& sigma, const at::Tensor& epsilon, double, bool) {
  check_inputs(distances, pairs, graph_index, bead_prior_types, keys, sigma, epsilon);
  return {at::empty({num_graphs}, distances.options()), at::empty_like(distances)};
}

class PairRepulsion : public torch::autograd::Function<PairRepulsion> {
 public:
  template <typename... Rest>
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& distances,
                            const at::Tensor& pairs, const at::Tensor& graph_index, const Rest&... rest) {
    const auto parameters = std::tie(rest...);  // num_graphs, types, P, keys, sigma, epsilon, ...
    TORCH_CHECK(!std::get<4>(parameters).requires_grad() && !std::get<5>(parameters).requires_grad(),
                "pair_repulsion: the repulsion parameters are fixed (no gradient with respect to them)");
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("gnnmd::pair_repulsion_forward", "")
                         .typed<decltype(pair_repulsion_forward_cpu)>();
    auto [energy, gradient] = op.call(distances, pairs, graph_index, rest...);
    ctx->save_for_backward({graph_index.index_select(0, pairs[0]), gradient});
    return energy;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    torch::autograd::variable_list out(11);
    out[0] = gnnmd_geometry::scaled_gradient("pair_repulsion", grads[0], saved[0], saved[1]);
    return out;
  }
};

#define GNNMD_REPULSION_ARGUMENTS                                                               \
  "Tensor distances, Tensor pairs, Tensor graph_index, int num_graphs, Tensor bead_prior_types, " \
  "int num_prior_types, Tensor keys, Tensor sigma, Tensor epsilon, float cutoff, bool shift"

}  // namespace

TORCH_LIBRARY_FRAGMENT(gnnmd, m) {
  m.def("pair_repulsion(" GNNMD_REPULSION_ARGUMENTS ") -> Tensor");
  m.def("pair_repulsion_forward(" GNNMD_REPULSION_ARGUMENTS ") -> (Tensor, Tensor)");
}

using Signature = decltype(pair_repulsion_forward_cpu);

TORCH_LIBRARY_IMPL(gnnmd, CPU, m) {
  m.impl("pair_repulsion", &gnnmd_geometry::EnergiesOnly<Signature>::call<pair_repulsion_forward_cpu>);
  m.impl("pair_repulsion_forward", &pair_repulsion_forward_cpu);
}

TORCH_LIBRARY_IMPL(gnnmd, Meta, m) {
  m.impl("pair_repulsion", &gnnmd_geometry::EnergiesOnly<Signature>::call<pair_repulsion_forward_meta>);
  m.impl("pair_repulsion_forward", &pair_repulsion_forward_meta);
}

TORCH_LIBRARY_IMPL(gnnmd, Autograd, m) {
  m.impl("pair_repulsion", &gnnmd_geometry::Autograd<PairRepulsion, Signature>::call);
}
