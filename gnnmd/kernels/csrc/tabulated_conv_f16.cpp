// float16 spline tables for gnnmd::tabulated_conv (registered in tabulated_conv.cpp): the row
// kernels of tabulated_rows.h with each coefficient vector widened from float16 to float32 as it
// is loaded (vcvtph2ps). A pair then reads 1 KiB of coefficients instead of 2 KiB at 128
// channels; at 64 replicas the convolution is bound mostly by those reads (measured: RESULTS,
// the tabulated16 backend). Compiled for AVX-512 alone: tabulated_conv.cpp calls these only on
// CPUs that have it, and widens the table itself elsewhere.
#pragma GCC target("avx512f,f16c")

#include <immintrin.h>

#include <cstdint>

#include "tabulated_rows.h"

namespace gnnmd_tabulated {
namespace {

template <>
struct Widen<float, uint16_t> {
  __attribute__((always_inline)) static inline Lanes<float>::vec load(const uint16_t* row,
                                                                      int64_t v) {
    const __m256i narrow =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + v * Lanes<float>::count));
    return reinterpret_cast<Lanes<float>::vec>(_mm512_cvtph_ps(narrow));
  }
};

}  // namespace

void forward_f32_half_table(const Graph& g, int64_t b, int64_t e, const float* r,
                            const uint16_t* c, float inv, float cut, const float* h, float* out) {
  switch (g.features) {
    case 32: return forward_rows<float, 32, uint16_t>(g, b, e, r, c, inv, cut, h, out);
    case 64: return forward_rows<float, 64, uint16_t>(g, b, e, r, c, inv, cut, h, out);
    default: return forward_rows<float, 128, uint16_t>(g, b, e, r, c, inv, cut, h, out);
  }
}

void backward_f32_half_table(const Graph& g, int64_t b, int64_t e, const float* r,
                             const uint16_t* c, float inv, float cut, const float* h,
                             const float* gr, float* gh, float* grr) {
  switch (g.features) {
    case 32: return backward_rows<float, 32, uint16_t>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
    case 64: return backward_rows<float, 64, uint16_t>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
    default: return backward_rows<float, 128, uint16_t>(g, b, e, r, c, inv, cut, h, gr, gh, grr);
  }
}

}  // namespace gnnmd_tabulated
