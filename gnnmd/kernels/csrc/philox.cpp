// gnnmd::philox_bits: Philox4x32-10 (Salmon, Moraes, Dror & Shaw, SC'11; Random123) on a batch of
// counters that share a 64-bit step and a 64-bit key.
//
// Counter of element m: (step mod 2^32, step div 2^32, lanes[m, 0], lanes[m, 1]); key (key_lo,
// key_hi). Returns the first two output words of each element, (M, 2) int64 in [0, 2^32): the
// uniform bits of one Box-Muller pair. The thermostat builds lanes from a replica's global index,
// a bead component and a stream (gnnmd.sim.noise), so every number is a pure function of its key.
//
// The pure-torch twin is gnnmd.sim.noise.philox_bits_torch (16-bit limbs in int64, exact on every
// device); tests hold both to Random123's known-answer vectors and to each other, bit for bit.
// No autograd: random bits have no derivative. Meta kernel: shapes only.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>

namespace {

constexpr uint32_t kMultiplier0 = 0xD2511F53u;
constexpr uint32_t kMultiplier1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1
constexpr int kRounds = 10;

inline void mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
}

// Philox4x32 with 10 rounds: the first round uses the key as given, each later one the key bumped
// by the Weyl constants (Random123's philox4x32_R).
inline void philox4x32_10(uint32_t counter[4], uint32_t key0, uint32_t key1) {
  for (int round = 0; round < kRounds; ++round) {
    if (round > 0) {
      key0 += kWeyl0;
      key1 += kWeyl1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMultiplier0, counter[0], &hi0, &lo0);
    mulhilo(kMultiplier1, counter[2], &hi1, &lo1);
    const uint32_t c1 = counter[1], c3 = counter[3];
    counter[0] = hi1 ^ c1 ^ key0;
    counter[1] = lo1;
    counter[2] = hi0 ^ c3 ^ key1;
    counter[3] = lo0;
  }
}

void check(const at::Tensor& lanes, const at::Tensor& step) {
  TORCH_CHECK(lanes.dim() == 2 && lanes.size(1) == 2 && lanes.scalar_type() == at::kLong,
              "philox_bits: lanes must be int64 (M, 2), got ", lanes.scalar_type(), " ", lanes.sizes());
  TORCH_CHECK(step.dim() == 0 && step.scalar_type() == at::kLong,
              "philox_bits: step must be a 0-d int64 tensor, got ", step.scalar_type(), " ", step.sizes());
}

at::Tensor philox_bits_cpu(const at::Tensor& lanes, const at::Tensor& step, int64_t key_lo, int64_t key_hi) {
  check(lanes, step);
  TORCH_CHECK(0 <= key_lo && key_lo < (int64_t(1) << 32) && 0 <= key_hi && key_hi < (int64_t(1) << 32),
              "philox_bits: key words must lie in [0, 2^32), got ", key_lo, " and ", key_hi);
  const int64_t s = step.item<int64_t>();
  TORCH_CHECK(s >= 0, "philox_bits: step must be >= 0, got ", s);
  at::Tensor in = lanes.contiguous();
  const int64_t count = in.size(0);
  at::Tensor out = at::empty({count, 2}, in.options());
  const int64_t* lane = in.data_ptr<int64_t>();
  int64_t* bits = out.data_ptr<int64_t>();
  const uint32_t step_lo = static_cast<uint32_t>(s), step_hi = static_cast<uint32_t>(s >> 32);
  const uint32_t k0 = static_cast<uint32_t>(key_lo), k1 = static_cast<uint32_t>(key_hi);
  at::parallel_for(0, count, 8192, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      uint32_t counter[4] = {step_lo, step_hi, static_cast<uint32_t>(lane[2 * m]),
                             static_cast<uint32_t>(lane[2 * m + 1])};
      philox4x32_10(counter, k0, k1);
      bits[2 * m] = counter[0];
      bits[2 * m + 1] = counter[1];
    }
  });
  return out;
}

at::Tensor philox_bits_meta(const at::Tensor& lanes, const at::Tensor& step, int64_t, int64_t) {
  check(lanes, step);
  return at::empty({lanes.size(0), 2}, lanes.options());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gnnmd, m) {
  m.def("philox_bits(Tensor lanes, Tensor step, int key_lo, int key_hi) -> Tensor");
}

TORCH_LIBRARY_IMPL(gnnmd, CPU, m) { m.impl("philox_bits", &philox_bits_cpu); }

TORCH_LIBRARY_IMPL(gnnmd, Meta, m) { m.impl("philox_bits", &philox_bits_meta); }
