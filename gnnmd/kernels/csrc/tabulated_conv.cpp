// gnnmd::tabulated_conv: the tabulated continuous-filter convolution as a registered torch op.
//
// The filter of an interaction block, W(r) = filter_net(rbf(r)) * C(r), is a cubic
// Hermite spline per channel: on segment k (r in [k dr, (k+1) dr)),
// W(t) = c0 + t (c1 + t (c2 + t c3)) with t = r/dr - k; coefficients (S, 4, F).
// For each unordered pair (i, j) with r < cutoff: out_i += W(r) h_j, out_j += W(r) h_i.
// Units: r, dr and the cutoff in nm; nothing else carries a unit.
//
// Registered here, so that TorchScript (and openmm-torch's TorchForce, in C++) can call it:
//   tabulated_conv           CPU kernel, autograd formula (C++), Meta kernel (shapes only)
//   tabulated_conv_backward  CPU kernel, Meta kernel; first derivatives only
// Threads: torch's thread pool and thread count. A batch of molecules packed one after another is
// cut at molecule boundaries, one piece of about E / threads pairs per thread, each writing only its
// own molecules' rows; a single molecule is cut into pair ranges, each thread accumulating into its
// own (N, F) buffer (no atomics), summed at the end.
// Vector width: the per-range loops (tabulated_rows.h) are compiled for AVX-512, AVX2 and a portable
// baseline (GCC target_clones), chosen at load time by the CPU that runs them.
// Tables: the features' dtype, or float16 (the tabulated16 backend: read as float16 by the kernels
// of tabulated_conv_f16.cpp under float32 features on AVX-512 CPUs, widened first elsewhere).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "geometry.h"
#include "tabulated_rows.h"

namespace {

using namespace gnnmd_tabulated;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GNNMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GNNMD_CLONES
#endif


// The row kernels for the channel counts fixed at compile time, else the loops for any count.
template <typename real>
__attribute__((always_inline)) inline void forward_any(const Graph& g, int64_t b, int64_t e,
                                                       const real* r, const real* c, real inv,
                                                       real cut, const real* h, real* out) {
  switch (g.features) {
    case 32: return forward_rows<real, 32>(g, b, e, r, c, inv, cut, h, out);
    case 64: return forward_rows<real, 64>(g, b, e, r, c, inv, cut, h, out);
    case 128: return forward_rows<real, 128>(g, b, e, r, c, inv, cut, h, out);
    default: return forward_range<real>(g, b, e, r, c, inv, cut, h, out);
  }
}

template <typename real>
__attribute__((always_inline)) inline void backward_any(const Graph& g, int64_t b, int64_t e,
                                                        const real* r, const real* c, real inv,
                                                        real cut, const real* h, const real* gr,
                                                        real* gh, real* grr) {
  switch (g.features) {
    case 32: return backward_rows<real, 32>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
    case 64: return backward_rows<real, 64>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
    case 128: return backward_rows<real, 128>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
    default: return backward_range<real>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
  }
}

// One non-template function per dtype and direction: target_clones needs plain functions.
GNNMD_CLONES void forward_f32(const Graph& g, int64_t b, int64_t e, const float* r, const float* c,
                              float inv, float cut, const float* h, float* out) {
  forward_any<float>(g, b, e, r, c, inv, cut, h, out);
}
GNNMD_CLONES void forward_f64(const Graph& g, int64_t b, int64_t e, const double* r, const double* c,
                              double inv, double cut, const double* h, double* out) {
  forward_any<double>(g, b, e, r, c, inv, cut, h, out);
}
GNNMD_CLONES void backward_f32(const Graph& g, int64_t b, int64_t e, const float* r, const float* c,
                               float inv, float cut, const float* h, const float* gr, float* gh,
                               float* grr) {
  backward_any<float>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
}
GNNMD_CLONES void backward_f64(const Graph& g, int64_t b, int64_t e, const double* r,
                               const double* c, double inv, double cut, const double* h,
                               const double* gr, double* gh, double* grr) {
  backward_any<double>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
}

inline void forward_typed(const Graph& g, int64_t b, int64_t e, const float* r, const float* c,
                          double inv, double cut, const float* h, float* out) {
  forward_f32(g, b, e, r, c, static_cast<float>(inv), static_cast<float>(cut), h, out);
}
inline void forward_typed(const Graph& g, int64_t b, int64_t e, const double* r, const double* c,
                          double inv, double cut, const double* h, double* out) {
  forward_f64(g, b, e, r, c, inv, cut, h, out);
}
inline void backward_typed(const Graph& g, int64_t b, int64_t e, const float* r, const float* c,
                           double inv, double cut, const float* h, const float* gr, float* gh,
                           float* grr) {
  backward_f32(g, b, e, r, c, static_cast<float>(inv), static_cast<float>(cut), h, gr, gh, grr);
}
inline void backward_typed(const Graph& g, int64_t b, int64_t e, const double* r, const double* c,
                           double inv, double cut, const double* h, const double* gr, double* gh,
                           double* grr) {
  backward_f64(g, b, e, r, c, inv, cut, h, gr, gh, grr);
}

void check_inputs(const at::Tensor& h, const at::Tensor& pairs, const at::Tensor& r,
                  const at::Tensor& coef) {
  TORCH_CHECK(h.dim() == 2, "tabulated_conv: features must be (N, F), got ", h.sizes());
  TORCH_CHECK(pairs.dim() == 2 && pairs.size(0) == 2 && pairs.scalar_type() == at::kLong,
              "tabulated_conv: pairs must be int64 (2, E), got ", pairs.scalar_type(), " ",
              pairs.sizes());
  TORCH_CHECK(r.dim() == 1 && r.size(0) == pairs.size(1),
              "tabulated_conv: distances must be (E,) with E = ", pairs.size(1), ", got ", r.sizes());
  TORCH_CHECK(coef.dim() == 3 && coef.size(1) == 4 && coef.size(2) == h.size(1) && coef.size(0) > 0,
              "tabulated_conv: coefficients must be (S, 4, F) with F = ", h.size(1), ", got ",
              coef.sizes());
  TORCH_CHECK(h.scalar_type() == r.scalar_type() &&
                  (h.scalar_type() == coef.scalar_type() || coef.scalar_type() == at::kHalf) &&
                  (h.scalar_type() == at::kFloat || h.scalar_type() == at::kDouble),
              "tabulated_conv: features, distances and coefficients must share one dtype, float32 "
              "or float64 (coefficients may also be float16); got ", h.scalar_type(), ", ",
              r.scalar_type(), ", ", coef.scalar_type());
}

// Where the pair list may be cut so that the pieces touch disjoint rows of the features: cuts
// c_0 = 0 < c_1 < ... < c_T = E and rows b_0 = 0 <= b_1 <= ... <= b_T = N such that every pair in
// [c_t, c_t+1) has both beads in [b_t, b_t+1). A batch of replicas packed one after another cuts
// at its graph boundaries; one molecule does not cut at all (T = 1). Also checks every index.
struct Partition {
  std::vector<int64_t> pair_cut;
  std::vector<int64_t> row_cut;
};

Partition disjoint_partition(const Graph& g, int64_t pairs, int64_t rows, int64_t parts) {
  // suffix_min[p]: the smallest bead of pairs [p, E); a cut at p is valid when every earlier pair's
  // larger bead is below it.
  std::vector<int64_t> suffix_min(pairs + 1, rows);
  for (int64_t p = pairs - 1; p >= 0; --p) {
    const int64_t i = g.pi[p], j = g.pj[p];
    TORCH_CHECK(i >= 0 && i < rows && j >= 0 && j < rows, "tabulated_conv: pair ", p, " is (", i,
                ", ", j, "), outside the ", rows, " rows of the features");
    suffix_min[p] = std::min(suffix_min[p + 1], std::min(i, j));
  }
  Partition part{{0}, {0}};
  int64_t prefix_max = -1;
  for (int64_t p = 0, t = 1; p < pairs && t < parts; ++p) {
    // The first valid cut at or after the even share t E / parts.
    if (p > 0 && prefix_max < suffix_min[p] && p * parts >= t * pairs) {
      part.pair_cut.push_back(p);
      part.row_cut.push_back(suffix_min[p]);
      while (t < parts && p * parts >= t * pairs) ++t;
    }
    prefix_max = std::max(prefix_max, std::max(g.pi[p], g.pj[p]));
  }
  part.pair_cut.push_back(pairs);
  part.row_cut.push_back(rows);
  return part;
}

// Runs range(begin, end, out) over [0, pairs) on torch's thread pool into a new (N, F) tensor
// shaped like `like`. Where the pairs split into pieces over disjoint rows, each thread zeroes and
// fills its own rows of the result (no atomics, no extra buffers); otherwise each thread adds one
// pair range into its own (N, F) buffer and the buffers are summed.
template <typename scalar_t, typename Range>
at::Tensor accumulate_pairs(const at::Tensor& like, const Graph& g, int64_t pairs, Range range) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t rows = like.size(0), F = like.size(1), stride = rows * F;
  const Partition part = disjoint_partition(g, pairs, rows, threads);
  const int64_t pieces = static_cast<int64_t>(part.pair_cut.size()) - 1;
  if (pieces == threads) {  // one thread: one piece, always
    at::Tensor out = at::empty_like(like);
    scalar_t* base = out.data_ptr<scalar_t>();
    at::parallel_for(0, pieces, 1, [&](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) {
        std::fill(base + part.row_cut[t] * F, base + part.row_cut[t + 1] * F, scalar_t(0));
        range(part.pair_cut[t], part.pair_cut[t + 1], base);
      }
    });
    return out;
  }
  // Task 0 accumulates into the result itself, task t > 0 into buffer t - 1; each zeroes its own
  // memory inside the parallel region, and a second pass adds the buffers row range by row range
  // (a separate zeros() and sum() cost more than the convolution at one small molecule).
  at::Tensor out = at::empty_like(like);
  at::Tensor buffers = at::empty({threads - 1, rows, F}, like.options());
  scalar_t* result = out.data_ptr<scalar_t>();
  scalar_t* base = buffers.data_ptr<scalar_t>();
  at::parallel_for(0, threads, 1, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      scalar_t* mine = t == 0 ? result : base + (t - 1) * stride;
      std::fill(mine, mine + stride, scalar_t(0));
      range(pairs * t / threads, pairs * (t + 1) / threads, mine);
    }
  });
  at::parallel_for(0, rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(F, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t t = 0; t + 1 < threads; ++t) {
                       const scalar_t* theirs = base + t * stride;
                       for (int64_t i = begin * F; i < end * F; ++i) result[i] += theirs[i];
                     }
                   });
  return out;
}

// Whether the float16-table kernels (tabulated_conv_f16.cpp, AVX-512) run here for these features;
// elsewhere a float16 table is widened to the features' dtype first (the same numbers, more bytes).
bool half_table_kernels(const at::Tensor& features) {
  static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("f16c");
  const int64_t F = features.size(1);
  return avx512 && features.scalar_type() == at::kFloat && (F == 32 || F == 64 || F == 128);
}

at::Tensor table_for_kernels(const at::Tensor& coefficients, const at::Tensor& features) {
  at::Tensor c = coefficients.contiguous();
  const bool widen = c.scalar_type() == at::kHalf && !half_table_kernels(features);
  return widen ? c.to(features.scalar_type()) : c;
}

at::Tensor tabulated_conv_cpu(const at::Tensor& features, const at::Tensor& pairs,
                              const at::Tensor& distances, const at::Tensor& coefficients,
                              double inv_spacing, double cutoff) {
  check_inputs(features, pairs, distances, coefficients);
  at::Tensor h = features.contiguous(), r = distances.contiguous();
  at::Tensor c = table_for_kernels(coefficients, h);
  at::Tensor p = pairs.contiguous();
  Graph g{p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.size(1), c.size(0), h.size(1)};
  at::Tensor out;
  if (c.scalar_type() == at::kHalf) {
    const auto* table = reinterpret_cast<const uint16_t*>(c.data_ptr<at::Half>());
    return accumulate_pairs<float>(h, g, p.size(1), [&](int64_t begin, int64_t end, float* mine) {
      forward_f32_half_table(g, begin, end, r.data_ptr<float>(), table,
                             static_cast<float>(inv_spacing), static_cast<float>(cutoff),
                             h.data_ptr<float>(), mine);
    });
  }
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "tabulated_conv", [&] {
    out = accumulate_pairs<scalar_t>(h, g, p.size(1), [&](int64_t begin, int64_t end, scalar_t* mine) {
      forward_typed(g, begin, end, r.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), inv_spacing,
                    cutoff, h.data_ptr<scalar_t>(), mine);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> tabulated_conv_backward_cpu(
    const at::Tensor& grad, const at::Tensor& features, const at::Tensor& pairs,
    const at::Tensor& distances, const at::Tensor& coefficients, double inv_spacing,
    double cutoff) {
  check_inputs(features, pairs, distances, coefficients);
  TORCH_CHECK(grad.sizes() == features.sizes(), "tabulated_conv_backward: grad must be ",
              features.sizes(), ", got ", grad.sizes());
  at::Tensor h = features.contiguous(), r = distances.contiguous();
  at::Tensor c = table_for_kernels(coefficients, h);
  at::Tensor p = pairs.contiguous(), gr = grad.contiguous().to(h.scalar_type());
  Graph g{p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.size(1), c.size(0), h.size(1)};
  at::Tensor grad_h, grad_r = at::empty_like(r);
  if (c.scalar_type() == at::kHalf) {
    const auto* table = reinterpret_cast<const uint16_t*>(c.data_ptr<at::Half>());
    grad_h = accumulate_pairs<float>(h, g, p.size(1), [&](int64_t begin, int64_t end, float* mine) {
      backward_f32_half_table(g, begin, end, r.data_ptr<float>(), table,
                              static_cast<float>(inv_spacing), static_cast<float>(cutoff),
                              h.data_ptr<float>(), gr.data_ptr<float>(), mine,
                              grad_r.data_ptr<float>());
    });
    return {grad_h, grad_r};
  }
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "tabulated_conv_backward", [&] {
    grad_h = accumulate_pairs<scalar_t>(h, g, p.size(1), [&](int64_t begin, int64_t end, scalar_t* mine) {
      backward_typed(g, begin, end, r.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), inv_spacing,
                     cutoff, h.data_ptr<scalar_t>(), gr.data_ptr<scalar_t>(), mine,
                     grad_r.data_ptr<scalar_t>());
    });
  });
  return {grad_h, grad_r};
}

at::Tensor tabulated_conv_meta(const at::Tensor& features, const at::Tensor& pairs,
                               const at::Tensor& distances, const at::Tensor& coefficients, double,
                               double) {
  check_inputs(features, pairs, distances, coefficients);
  return at::empty_like(features);
}

std::tuple<at::Tensor, at::Tensor> tabulated_conv_backward_meta(
    const at::Tensor& grad, const at::Tensor& features, const at::Tensor& pairs,
    const at::Tensor& distances, const at::Tensor& coefficients, double, double) {
  check_inputs(features, pairs, distances, coefficients);
  return {at::empty_like(features), at::empty_like(distances)};
}

class TabulatedConv : public torch::autograd::Function<TabulatedConv> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& features,
                            const at::Tensor& pairs, const at::Tensor& distances,
                            const at::Tensor& coefficients, double inv_spacing, double cutoff) {
    TORCH_CHECK(!coefficients.requires_grad(),
                "tabulated_conv: the spline coefficients are fixed (tabulated filters cannot be "
                "trained); train with the reference backend");
    ctx->save_for_backward({features, pairs, distances, coefficients});
    ctx->saved_data["inv_spacing"] = inv_spacing;
    ctx->saved_data["cutoff"] = cutoff;
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("gnnmd::tabulated_conv", "")
                         .typed<decltype(tabulated_conv_cpu)>();
    return op.call(features, pairs, distances, coefficients, inv_spacing, cutoff);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    gnnmd_geometry::require_first_derivatives("tabulated_conv");
    auto saved = ctx->get_saved_variables();
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("gnnmd::tabulated_conv_backward", "")
                         .typed<decltype(tabulated_conv_backward_cpu)>();
    auto [grad_h, grad_r] = op.call(grads[0], saved[0], saved[1], saved[2], saved[3],
                                    ctx->saved_data["inv_spacing"].toDouble(),
                                    ctx->saved_data["cutoff"].toDouble());
    return {grad_h, at::Tensor(), grad_r, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor tabulated_conv_autograd(const at::Tensor& features, const at::Tensor& pairs,
                                   const at::Tensor& distances, const at::Tensor& coefficients,
                                   double inv_spacing, double cutoff) {
  return TabulatedConv::apply(features, pairs, distances, coefficients, inv_spacing, cutoff);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gnnmd, m) {
  m.def(
      "tabulated_conv(Tensor features, Tensor pairs, Tensor distances, Tensor coefficients, "
      "float inv_spacing, float cutoff) -> Tensor");
  m.def(
      "tabulated_conv_backward(Tensor grad, Tensor features, Tensor pairs, Tensor distances, "
      "Tensor coefficients, float inv_spacing, float cutoff) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gnnmd, CPU, m) {
  m.impl("tabulated_conv", &tabulated_conv_cpu);
  m.impl("tabulated_conv_backward", &tabulated_conv_backward_cpu);
}

TORCH_LIBRARY_IMPL(gnnmd, Meta, m) {
  m.impl("tabulated_conv", &tabulated_conv_meta);
  m.impl("tabulated_conv_backward", &tabulated_conv_backward_meta);
}

TORCH_LIBRARY_IMPL(gnnmd, Autograd, m) {
  m.impl("tabulated_conv", &tabulated_conv_autograd);
}
