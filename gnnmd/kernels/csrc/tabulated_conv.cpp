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
// Threads: at::parallel_for over contiguous pair ranges, each thread accumulating into its
// own (N, F) buffer (no atomics), summed at the end; torch's thread pool and thread count.
// Vector width: the per-range loops are compiled for AVX-512, AVX2 and a portable baseline
// (GCC target_clones), chosen at load time by the CPU that runs them.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>
#include <vector>

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GNNMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define GNNMD_CLONES
#endif

template <typename real>
inline int64_t segment(real r, real inv_dr, int64_t segments, real cutoff, real* t) {
  if (!(r < cutoff)) return -1;
  real x = r * inv_dr;
  int64_t k = static_cast<int64_t>(x);
  if (k >= segments) k = segments - 1;
  if (k < 0) k = 0;
  *t = x - static_cast<real>(k);
  return k;
}

struct Graph {
  const int64_t* pi;
  const int64_t* pj;
  int64_t segments;
  int64_t features;
};

template <typename real>
__attribute__((always_inline)) inline void forward_range(
    const Graph& g, int64_t begin, int64_t end, const real* r, const real* coef, real inv_dr,
    real cutoff, const real* h, real* out) {
  const int64_t F = g.features;
  for (int64_t p = begin; p < end; ++p) {
    real t;
    int64_t k = segment<real>(r[p], inv_dr, g.segments, cutoff, &t);
    if (k < 0) continue;
    const real *c0 = coef + k * 4 * F, *c1 = c0 + F, *c2 = c1 + F, *c3 = c2 + F;
    const real* __restrict__ hi = h + g.pi[p] * F;
    const real* __restrict__ hj = h + g.pj[p] * F;
    real* __restrict__ oi = out + g.pi[p] * F;
    real* __restrict__ oj = out + g.pj[p] * F;
#pragma omp simd
    for (int64_t c = 0; c < F; ++c) {
      real w = c0[c] + t * (c1[c] + t * (c2[c] + t * c3[c]));
      oi[c] += w * hj[c];
      oj[c] += w * hi[c];
    }
  }
}

template <typename real>
__attribute__((always_inline)) inline void backward_range(
    const Graph& g, int64_t begin, int64_t end, const real* r, const real* coef, real inv_dr,
    real cutoff, const real* h, const real* grad, real* grad_h, real* grad_r) {
  const int64_t F = g.features;
  for (int64_t p = begin; p < end; ++p) {
    real t;
    int64_t k = segment<real>(r[p], inv_dr, g.segments, cutoff, &t);
    if (k < 0) {
      grad_r[p] = 0;
      continue;
    }
    const real *c0 = coef + k * 4 * F, *c1 = c0 + F, *c2 = c1 + F, *c3 = c2 + F;
    const real* __restrict__ hi = h + g.pi[p] * F;
    const real* __restrict__ hj = h + g.pj[p] * F;
    const real* __restrict__ gi = grad + g.pi[p] * F;
    const real* __restrict__ gj = grad + g.pj[p] * F;
    real* __restrict__ ui = grad_h + g.pi[p] * F;
    real* __restrict__ uj = grad_h + g.pj[p] * F;
    real s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < F; ++c) {
      real w = c0[c] + t * (c1[c] + t * (c2[c] + t * c3[c]));
      real dw = c1[c] + t * (2 * c2[c] + 3 * t * c3[c]);
      ui[c] += w * gj[c];
      uj[c] += w * gi[c];
      s += dw * (gi[c] * hj[c] + gj[c] * hi[c]);
    }
    grad_r[p] = s * inv_dr;
  }
}

// One non-template function per dtype and direction: target_clones needs plain functions.
GNNMD_CLONES void forward_f32(const Graph& g, int64_t b, int64_t e, const float* r, const float* c,
                              float inv, float cut, const float* h, float* out) {
  forward_range<float>(g, b, e, r, c, inv, cut, h, out);
}
GNNMD_CLONES void forward_f64(const Graph& g, int64_t b, int64_t e, const double* r, const double* c,
                              double inv, double cut, const double* h, double* out) {
  forward_range<double>(g, b, e, r, c, inv, cut, h, out);
}
GNNMD_CLONES void backward_f32(const Graph& g, int64_t b, int64_t e, const float* r, const float* c,
                               float inv, float cut, const float* h, const float* gr, float* gh,
                               float* grr) {
  backward_range<float>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
}
GNNMD_CLONES void backward_f64(const Graph& g, int64_t b, int64_t e, const double* r,
                               const double* c, double inv, double cut, const double* h,
                               const double* gr, double* gh, double* grr) {
  backward_range<double>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
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
  TORCH_CHECK(h.scalar_type() == r.scalar_type() && h.scalar_type() == coef.scalar_type() &&
                  (h.scalar_type() == at::kFloat || h.scalar_type() == at::kDouble),
              "tabulated_conv: features, distances and coefficients must share one dtype, float32 "
              "or float64; got ", h.scalar_type(), ", ", r.scalar_type(), ", ", coef.scalar_type());
}

// Runs range(begin, end, buffer) over [0, pairs) on torch's thread pool, each thread adding into its
// own zeroed (N, F) buffer shaped like `like`; returns the buffers' sum.
template <typename scalar_t, typename Range>
at::Tensor per_thread_sum(const at::Tensor& like, int64_t pairs, Range range) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t stride = like.size(0) * like.size(1);
  at::Tensor buffers = at::zeros({threads, like.size(0), like.size(1)}, like.options());
  // Enough pairs per task that summing the buffers stays small next to the work.
  const int64_t grain = std::max<int64_t>(256, pairs / threads + 1);
  scalar_t* base = buffers.data_ptr<scalar_t>();
  at::parallel_for(0, pairs, grain, [&](int64_t begin, int64_t end) {
    range(begin, end, base + at::get_thread_num() * stride);
  });
  return threads == 1 ? buffers[0] : buffers.sum(0);
}

at::Tensor tabulated_conv_cpu(const at::Tensor& features, const at::Tensor& pairs,
                              const at::Tensor& distances, const at::Tensor& coefficients,
                              double inv_spacing, double cutoff) {
  check_inputs(features, pairs, distances, coefficients);
  at::Tensor h = features.contiguous(), r = distances.contiguous(), c = coefficients.contiguous();
  at::Tensor p = pairs.contiguous();
  Graph g{p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.size(1), c.size(0), h.size(1)};
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "tabulated_conv", [&] {
    out = per_thread_sum<scalar_t>(h, p.size(1), [&](int64_t begin, int64_t end, scalar_t* mine) {
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
  at::Tensor h = features.contiguous(), r = distances.contiguous(), c = coefficients.contiguous();
  at::Tensor p = pairs.contiguous(), gr = grad.contiguous().to(h.scalar_type());
  Graph g{p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + p.size(1), c.size(0), h.size(1)};
  at::Tensor grad_h, grad_r = at::empty_like(r);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "tabulated_conv_backward", [&] {
    grad_h = per_thread_sum<scalar_t>(h, p.size(1), [&](int64_t begin, int64_t end, scalar_t* mine) {
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
    // Backward runs in grad mode only for create_graph=True: a second derivative.
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "the tabulated (native CPU) kernel gives first derivatives only (forces), not the "
                "second derivatives that create_graph=True asks for (training through forces); "
                "use the reference backend to train");
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
