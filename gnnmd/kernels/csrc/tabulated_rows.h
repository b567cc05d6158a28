// The tabulated convolution's per-range loops, shared by tabulated_conv.cpp (float32 and float64
// tables, compiled for AVX-512, AVX2 and a baseline) and tabulated_conv_f16.cpp (float16 tables,
// AVX-512). No ATen here: tabulated_conv_f16.cpp compiles all of this header for AVX-512, so it
// must hold nothing with external linkage but the plain struct Graph and the declarations below;
// the templates live in an unnamed namespace (one copy per file, never merged by the linker).
// Spline: on segment k (r in [k dr, (k+1) dr)), W(t) = c0 + t (c1 + t (c2 + t c3)) with
// t = r/dr - k; coefficients (S, 4, F). Units: r, dr and the cutoff in nm.
#pragma once

#include <cstdint>

namespace gnnmd_tabulated {

struct Graph {
  const int64_t* pi;
  const int64_t* pj;
  int64_t segments;
  int64_t features;
};

// tabulated_conv_f16.cpp: float32 features with float16 coefficients (uint16_t bits), widths 32,
// 64 and 128, on CPUs with AVX-512 (the caller checks both).
void forward_f32_half_table(const Graph& g, int64_t begin, int64_t end, const float* r,
                            const uint16_t* coef, float inv_dr, float cutoff, const float* h,
                            float* out);
void backward_f32_half_table(const Graph& g, int64_t begin, int64_t end, const float* r,
                             const uint16_t* coef, float inv_dr, float cutoff, const float* h,
                             const float* grad, float* grad_h, float* grad_r);

namespace {

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

// Any channel count; the common widths take the row kernels below.
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

// Pairs sorted by their first bead (as pair lists are built: i-major) share i over runs of
// pairs. The row kernels below keep bead i's features and its running sum in vector registers
// over such a run and write out_i once per run, so a pair costs its coefficients, h_j and
// out_j only. Vectors are GCC vector extensions of 64 bytes: one AVX-512 register, two AVX2
// ones or four SSE ones, whichever clone runs.
template <typename real>
struct Lanes {
  typedef real vec __attribute__((vector_size(64), aligned(sizeof(real)), may_alias));
  static constexpr int64_t count = 64 / sizeof(real);
};

// The v-th vector of a table row as `real`: Widen<real, table_t>::load. The header defines the case
// of a table in the features' own type; tabulated_conv_f16.cpp adds float16 (stored as uint16_t)
// widened to float32, compiled for AVX-512 alone.
template <typename real, typename table_t>
struct Widen;

template <typename real>
struct Widen<real, real> {
  __attribute__((always_inline)) static inline typename Lanes<real>::vec load(const real* row,
                                                                              int64_t v) {
    return reinterpret_cast<const typename Lanes<real>::vec*>(row)[v];
  }
};

template <typename real, int64_t Width, typename table_t = real>
__attribute__((always_inline)) inline void forward_rows(
    const Graph& g, int64_t begin, int64_t end, const real* r, const table_t* coef, real inv_dr,
    real cutoff, const real* h, real* out) {
  using vec = typename Lanes<real>::vec;
  using Table = Widen<real, table_t>;
  constexpr int64_t V = Width / Lanes<real>::count;
  vec hi[V], acc[V];
  int64_t current = -1;
  auto flush = [&]() {
    if (current < 0) return;
    vec* oi = reinterpret_cast<vec*>(out + current * Width);
    for (int64_t v = 0; v < V; ++v) oi[v] += acc[v];
  };
  for (int64_t p = begin; p < end; ++p) {
    real t;
    const int64_t k = segment<real>(r[p], inv_dr, g.segments, cutoff, &t);
    if (k < 0) continue;
    const int64_t i = g.pi[p];
    if (i != current) {
      flush();
      current = i;
      const vec* source = reinterpret_cast<const vec*>(h + i * Width);
      for (int64_t v = 0; v < V; ++v) {
        hi[v] = source[v];
        acc[v] = vec{};
      }
    }
    const table_t* c = coef + k * 4 * Width;
    const vec* hj = reinterpret_cast<const vec*>(h + g.pj[p] * Width);
    vec* oj = reinterpret_cast<vec*>(out + g.pj[p] * Width);
    for (int64_t v = 0; v < V; ++v) {
      const vec c0 = Table::load(c, v), c1 = Table::load(c, V + v);
      const vec c2 = Table::load(c, 2 * V + v), c3 = Table::load(c, 3 * V + v);
      const vec w = c0 + t * (c1 + t * (c2 + t * c3));
      acc[v] += w * hj[v];
      oj[v] += w * hi[v];
    }
  }
  flush();
}

template <typename real, int64_t Width, typename table_t = real>
__attribute__((always_inline)) inline void backward_rows(
    const Graph& g, int64_t begin, int64_t end, const real* r, const table_t* coef, real inv_dr,
    real cutoff, const real* h, const real* grad, real* grad_h, real* grad_r) {
  using vec = typename Lanes<real>::vec;
  using Table = Widen<real, table_t>;
  constexpr int64_t V = Width / Lanes<real>::count;
  vec hi[V], gi[V], acc[V];
  int64_t current = -1;
  auto flush = [&]() {
    if (current < 0) return;
    vec* ui = reinterpret_cast<vec*>(grad_h + current * Width);
    for (int64_t v = 0; v < V; ++v) ui[v] += acc[v];
  };
  for (int64_t p = begin; p < end; ++p) {
    real t;
    const int64_t k = segment<real>(r[p], inv_dr, g.segments, cutoff, &t);
    if (k < 0) {
      grad_r[p] = 0;
      continue;
    }
    const int64_t i = g.pi[p];
    if (i != current) {
      flush();
      current = i;
      const vec* hs = reinterpret_cast<const vec*>(h + i * Width);
      const vec* gs = reinterpret_cast<const vec*>(grad + i * Width);
      for (int64_t v = 0; v < V; ++v) {
        hi[v] = hs[v];
        gi[v] = gs[v];
        acc[v] = vec{};
      }
    }
    const table_t* c = coef + k * 4 * Width;
    const vec* hj = reinterpret_cast<const vec*>(h + g.pj[p] * Width);
    const vec* gj = reinterpret_cast<const vec*>(grad + g.pj[p] * Width);
    vec* uj = reinterpret_cast<vec*>(grad_h + g.pj[p] * Width);
    vec s{};
    for (int64_t v = 0; v < V; ++v) {
      const vec c0 = Table::load(c, v), c1 = Table::load(c, V + v);
      const vec c2 = Table::load(c, 2 * V + v), c3 = Table::load(c, 3 * V + v);
      const vec w = c0 + t * (c1 + t * (c2 + t * c3));
      const vec dw = c1 + t * (2 * c2 + 3 * t * c3);
      acc[v] += w * gj[v];
      uj[v] += w * gi[v];
      s += dw * (gi[v] * hj[v] + gj[v] * hi[v]);
    }
    real total = 0;
    for (int64_t l = 0; l < Lanes<real>::count; ++l) total += s[l];
    grad_r[p] = total * inv_dr;
  }
  flush();
}

}  // namespace
}  // namespace gnnmd_tabulated
