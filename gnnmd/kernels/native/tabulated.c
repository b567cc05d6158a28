/* Tabulated continuous-filter convolution on the CPU: forward and backward, fused.
 *
 * The filter of an interaction block, W(r) = filter_net(rbf(r)) * C(r), is a
 * cubic Hermite spline per channel: on segment k (r in [k*dr, (k+1)*dr)),
 * W(t) = c0 + t*(c1 + t*(c2 + t*c3)) with t = r/dr - k, coefficients stored as
 * coef[k][4][F]. Pairs at or beyond the cutoff contribute nothing.
 *
 * Each call handles the unordered pairs [begin, end) and accumulates into its
 * own output buffers, so callers run disjoint pair ranges on separate threads
 * (each with a private buffer) without atomics. Units: r in nm; W dimensionless
 * per the network; no unit enters here beyond r and dr.
 */
#include <stdint.h>
#include <string.h>

#define DEFINE_KERNELS(real, suffix)                                                          \
static inline int segment_##suffix(real r, real inv_dr, int64_t segments, real cutoff,        \
                                    real *t) {                                               \
    if (!(r < cutoff)) return -1;                                                            \
    real x = r * inv_dr;                                                                     \
    int64_t k = (int64_t)x;                                                                  \
    if (k >= segments) k = segments - 1;                                                     \
    if (k < 0) k = 0;                                                                        \
    *t = x - (real)k;                                                                        \
    return (int)k;                                                                           \
}                                                                                            \
                                                                                             \
void tabulated_forward_##suffix(int64_t begin, int64_t end, const int64_t *pi,               \
                                const int64_t *pj, const real *r, const real *coef,          \
                                int64_t segments, real inv_dr, real cutoff, int64_t F,       \
                                const real *h, real *out) {                                  \
    for (int64_t p = begin; p < end; ++p) {                                                  \
        real t;                                                                              \
        int k = segment_##suffix(r[p], inv_dr, segments, cutoff, &t);                        \
        if (k < 0) continue;                                                                 \
        const real *c0 = coef + (int64_t)k * 4 * F, *c1 = c0 + F, *c2 = c1 + F, *c3 = c2 + F; \
        const real *restrict hi = h + pi[p] * F, *restrict hj = h + pj[p] * F;               \
        real *restrict oi = out + pi[p] * F, *restrict oj = out + pj[p] * F;                 \
        _Pragma("omp simd")                                                                  \
        for (int64_t c = 0; c < F; ++c) {                                                    \
            real w = c0[c] + t * (c1[c] + t * (c2[c] + t * c3[c]));                          \
            oi[c] += w * hj[c];                                                              \
            oj[c] += w * hi[c];                                                              \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
void tabulated_backward_##suffix(int64_t begin, int64_t end, const int64_t *pi,              \
                                 const int64_t *pj, const real *r, const real *coef,         \
                                 int64_t segments, real inv_dr, real cutoff, int64_t F,      \
                                 const real *h, const real *g, real *grad_h, real *grad_r) { \
    for (int64_t p = begin; p < end; ++p) {                                                  \
        real t;                                                                              \
        int k = segment_##suffix(r[p], inv_dr, segments, cutoff, &t);                        \
        if (k < 0) { grad_r[p] = 0; continue; }                                              \
        const real *c0 = coef + (int64_t)k * 4 * F, *c1 = c0 + F, *c2 = c1 + F, *c3 = c2 + F; \
        const real *restrict hi = h + pi[p] * F, *restrict hj = h + pj[p] * F;               \
        const real *restrict gi = g + pi[p] * F, *restrict gj = g + pj[p] * F;               \
        real *restrict ui = grad_h + pi[p] * F, *restrict uj = grad_h + pj[p] * F;           \
        real s = 0;                                                                          \
        _Pragma("omp simd reduction(+:s)")                                                   \
        for (int64_t c = 0; c < F; ++c) {                                                    \
            real w = c0[c] + t * (c1[c] + t * (c2[c] + t * c3[c]));                          \
            real dw = c1[c] + t * (2 * c2[c] + 3 * t * c3[c]);                               \
            ui[c] += w * gj[c];                                                              \
            uj[c] += w * gi[c];                                                              \
            s += dw * (gi[c] * hj[c] + gj[c] * hi[c]);                                       \
        }                                                                                    \
        grad_r[p] = s * inv_dr;                                                              \
    }                                                                                        \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
