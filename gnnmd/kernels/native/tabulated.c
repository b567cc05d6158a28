/* Tabulated continuous-filter convolution on the CPU: forward and backward, fused.
 *
 * The filter of an interaction block, W(r) = filter_net(rbf(r)) * C(r), is a
 * cubic Hermite spline per channel: on segment k (r in [k*dr, (k+1)*dr)),
 * W(t) = c0 + t*(c1 + t*(c2 + t*c3)) with t = r/dr - k, coefficients stored as
 * coef[k][4][F]. Pairs at or beyond the cutoff contribute nothing.
 *
 * OpenMP threads take contiguous ranges of the unordered pairs and accumulate
 * into private (N, F) buffers (thread 0 into the output itself, the others into
 * `scratch`), summed at the end: no atomics. Built with -fopenmp, this library
 * binds to the libgomp that torch has already loaded (same soname), so it
 * shares torch's thread pool and its torch.set_num_threads() setting.
 * Units: r and dr in nm; nothing else here carries a unit.
 */
#include <stdint.h>
#include <string.h>
#include <omp.h>

#define DEFINE_KERNELS(real, suffix)                                                          \
static inline int64_t segment_##suffix(real r, real inv_dr, int64_t segments, real cutoff,    \
                                        real *t) {                                           \
    if (!(r < cutoff)) return -1;                                                            \
    real x = r * inv_dr;                                                                     \
    int64_t k = (int64_t)x;                                                                  \
    if (k >= segments) k = segments - 1;                                                     \
    if (k < 0) k = 0;                                                                        \
    *t = x - (real)k;                                                                        \
    return k;                                                                                \
}                                                                                            \
                                                                                             \
static void reduce_##suffix(real *out, const real *scratch, int threads, int64_t size) {     \
    _Pragma("omp parallel for schedule(static)")                                             \
    for (int64_t i = 0; i < size; ++i) {                                                     \
        real total = out[i];                                                                 \
        for (int t = 1; t < threads; ++t) total += scratch[(int64_t)(t - 1) * size + i];     \
        out[i] = total;                                                                      \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* out (N, F) must be zero; scratch holds (threads - 1) * N * F values. */                   \
void tabulated_forward_##suffix(int64_t E, const int64_t *pi, const int64_t *pj, const real *r,\
                                const real *coef, int64_t segments, real inv_dr, real cutoff,\
                                int64_t N, int64_t F, const real *h, real *out, real *scratch,\
                                int threads) {                                               \
    _Pragma("omp parallel num_threads(threads)")                                             \
    {                                                                                        \
        int tid = omp_get_thread_num(), team = omp_get_num_threads();                       \
        real *buffer = tid == 0 ? out : scratch + (int64_t)(tid - 1) * N * F;               \
        if (tid > 0) memset(buffer, 0, sizeof(real) * N * F);                               \
        int64_t begin = E * tid / team, end = E * (tid + 1) / team;                          \
        for (int64_t p = begin; p < end; ++p) {                                              \
            real t;                                                                          \
            int64_t k = segment_##suffix(r[p], inv_dr, segments, cutoff, &t);                \
            if (k < 0) continue;                                                             \
            const real *c0 = coef + k * 4 * F, *c1 = c0 + F, *c2 = c1 + F, *c3 = c2 + F;     \
            const real *restrict hi = h + pi[p] * F, *restrict hj = h + pj[p] * F;           \
            real *restrict oi = buffer + pi[p] * F, *restrict oj = buffer + pj[p] * F;       \
            _Pragma("omp simd")                                                              \
            for (int64_t c = 0; c < F; ++c) {                                                \
                real w = c0[c] + t * (c1[c] + t * (c2[c] + t * c3[c]));                      \
                oi[c] += w * hj[c];                                                          \
                oj[c] += w * hi[c];                                                          \
            }                                                                                \
        }                                                                                    \
        if (tid == 0 && team < threads) threads = team;                                      \
    }                                                                                        \
    if (threads > 1) reduce_##suffix(out, scratch, threads, N * F);                          \
}                                                                                            \
                                                                                             \
/* grad_h (N, F) must be zero; grad_r (E,) is written for every pair. */                     \
void tabulated_backward_##suffix(int64_t E, const int64_t *pi, const int64_t *pj,            \
                                 const real *r, const real *coef, int64_t segments,          \
                                 real inv_dr, real cutoff, int64_t N, int64_t F,             \
                                 const real *h, const real *g, real *grad_h, real *grad_r,   \
                                 real *scratch, int threads) {                               \
    _Pragma("omp parallel num_threads(threads)")                                             \
    {                                                                                        \
        int tid = omp_get_thread_num(), team = omp_get_num_threads();                       \
        real *buffer = tid == 0 ? grad_h : scratch + (int64_t)(tid - 1) * N * F;            \
        if (tid > 0) memset(buffer, 0, sizeof(real) * N * F);                               \
        int64_t begin = E * tid / team, end = E * (tid + 1) / team;                          \
        for (int64_t p = begin; p < end; ++p) {                                              \
            real t;                                                                          \
            int64_t k = segment_##suffix(r[p], inv_dr, segments, cutoff, &t);                \
            if (k < 0) { grad_r[p] = 0; continue; }                                          \
            const real *c0 = coef + k * 4 * F, *c1 = c0 + F, *c2 = c1 + F, *c3 = c2 + F;     \
            const real *restrict hi = h + pi[p] * F, *restrict hj = h + pj[p] * F;           \
            const real *restrict gi = g + pi[p] * F, *restrict gj = g + pj[p] * F;           \
            real *restrict ui = buffer + pi[p] * F, *restrict uj = buffer + pj[p] * F;       \
            real s = 0;                                                                      \
            _Pragma("omp simd reduction(+:s)")                                               \
            for (int64_t c = 0; c < F; ++c) {                                                \
                real w = c0[c] + t * (c1[c] + t * (c2[c] + t * c3[c]));                      \
                real dw = c1[c] + t * (2 * c2[c] + 3 * t * c3[c]);                           \
                ui[c] += w * gj[c];                                                          \
                uj[c] += w * gi[c];                                                          \
                s += dw * (gi[c] * hj[c] + gj[c] * hi[c]);                                   \
            }                                                                                \
            grad_r[p] = s * inv_dr;                                                          \
        }                                                                                    \
        if (tid == 0 && team < threads) threads = team;                                      \
    }                                                                                        \
    if (threads > 1) reduce_##suffix(grad_h, scratch, threads, N * F);                       \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
