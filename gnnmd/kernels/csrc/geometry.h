// Shared by the native ops: 3-vectors, the minimum image, index checks, the refusals of second
// derivatives and box gradients, and the autograd pattern of an energy whose gradient is computed with it.
//
// Units: positions and box vectors in nm. Boxes are (G, 3, 3) rows a, b, c per graph in OpenMM's
// reduced triclinic form (a along x, b in the xy plane), wrapped along c, then b, then a, as
// gnnmd.neighbors.dense.displacements does.
#pragma once

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>

namespace gnnmd_geometry {

template <typename real>
struct Vec {
  real x, y, z;
  Vec operator+(const Vec& o) const { return {x + o.x, y + o.y, z + o.z}; }
  Vec operator-(const Vec& o) const { return {x - o.x, y - o.y, z - o.z}; }
  Vec operator*(real s) const { return {x * s, y * s, z * s}; }
  Vec operator-() const { return {-x, -y, -z}; }
};

template <typename real>
inline real dot(const Vec<real>& a, const Vec<real>& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z;
}

template <typename real>
inline Vec<real> cross(const Vec<real>& a, const Vec<real>& b) {
  return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}

template <typename real>
inline real norm(const Vec<real>& a) {
  return std::sqrt(dot(a, a));
}

template <typename real>
inline void add_to(real* gradient, int64_t bead, const Vec<real>& v) {
  gradient[3 * bead] += v.x;
  gradient[3 * bead + 1] += v.y;
  gradient[3 * bead + 2] += v.z;
}

// Positions, the graph of each bead and the optional boxes of one call.
template <typename real>
struct Frame {
  const real* x;
  const int64_t* graph;
  const real* box;  // nullptr: no periodic box

  // r_j - r_i, minimum image in graph(i)'s box when there is one.
  Vec<real> displacement(int64_t i, int64_t j) const {
    Vec<real> v{x[3 * j] - x[3 * i], x[3 * j + 1] - x[3 * i + 1], x[3 * j + 2] - x[3 * i + 2]};
    if (box == nullptr) return v;
    const real* b = box + 9 * graph[i];
    real shift = std::nearbyint(v.z / b[8]);
    v = v - Vec<real>{b[6], b[7], b[8]} * shift;
    shift = std::nearbyint(v.y / b[4]);
    v = v - Vec<real>{b[3], b[4], b[5]} * shift;
    shift = std::nearbyint(v.x / b[0]);
    return v - Vec<real>{b[0], b[1], b[2]} * shift;
  }
};

inline void check_frame(const char* op, const at::Tensor& positions, const at::Tensor& graph_index,
                        const c10::optional<at::Tensor>& box) {
  TORCH_CHECK(positions.dim() == 2 && positions.size(1) == 3 &&
                  (positions.scalar_type() == at::kFloat || positions.scalar_type() == at::kDouble),
              op, ": positions must be float32 or float64 (N, 3), got ", positions.scalar_type(), " ",
              positions.sizes());
  TORCH_CHECK(graph_index.dim() == 1 && graph_index.size(0) == positions.size(0) &&
                  graph_index.scalar_type() == at::kLong,
              op, ": graph_index must be int64 (N,) with N = ", positions.size(0), ", got ",
              graph_index.scalar_type(), " ", graph_index.sizes());
  if (box.has_value()) {
    TORCH_CHECK(box->dim() == 3 && box->size(1) == 3 && box->size(2) == 3 &&
                    box->scalar_type() == positions.scalar_type(),
                op, ": box must be (G, 3, 3) of the positions' dtype, got ", box->scalar_type(), " ",
                box->sizes());
  }
}

// Checks that every index of `indices` (any shape) lies in [0, rows); names the first that does not.
inline void check_indices(const char* op, const char* what, const at::Tensor& indices, int64_t rows) {
  TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": ", what, " must be int64, got ",
              indices.scalar_type());
  const int64_t* data = indices.data_ptr<int64_t>();
  for (int64_t n = 0, count = indices.numel(); n < count; ++n) {
    TORCH_CHECK(data[n] >= 0 && data[n] < rows, op, ": ", what, " entry ", n, " is ", data[n],
                ", outside the ", rows, " beads");
  }
}

// Called in a backward formula: backward runs in grad mode only for create_graph=True, a second
// derivative, which the native ops do not give.
inline void require_first_derivatives(const char* op) {
  TORCH_CHECK(!at::GradMode::is_enabled(), op,
              ": the native op gives first derivatives only (forces), not the second derivatives "
              "that create_graph=True asks for (training through forces); use the reference backend "
              "to train");
}

// The geometry and prior ops give no gradient with respect to a periodic box (no virial).
inline void require_no_box_gradient(const char* op, const c10::optional<at::Tensor>& box) {
  TORCH_CHECK(!box.has_value() || !box->requires_grad(), op,
              ": gives no gradient with respect to the box (no virial)");
}

// Autograd of E = energy(inputs) (G,) whose gradient (M, ...) with respect to one input the forward
// computed anyway: dL/dinput_m = dL/dE_owner(m) * gradient_m. First derivatives only: the saved
// gradient does not depend differentiably on the input.
inline at::Tensor scaled_gradient(const char* op, const at::Tensor& grad_energy, const at::Tensor& owner,
                                  const at::Tensor& gradient) {
  require_first_derivatives(op);
  at::Tensor scale = grad_energy.index_select(0, owner);
  if (gradient.dim() == 2) scale = scale.unsqueeze(1);
  return scale * gradient;
}

// The energies alone of a forward op returning (energies, gradient): the CPU and Meta kernels of an
// energy op, for calls without autograd (no_grad, inference mode, shape propagation).
// Use: &EnergiesOnly<decltype(forward)>::call<forward>.
template <typename Signature>
struct EnergiesOnly;
template <typename... Args>
struct EnergiesOnly<std::tuple<at::Tensor, at::Tensor>(Args...)> {
  template <std::tuple<at::Tensor, at::Tensor> (*forward)(Args...)>
  static at::Tensor call(Args... args) {
    return std::get<0>(forward(args...));
  }
};

// The autograd kernel of an op whose formula is the torch::autograd::Function `Formula`.
// Use: &Autograd<Formula, decltype(forward)>::call.
template <typename Formula, typename Signature>
struct Autograd;
template <typename Formula, typename... Args>
struct Autograd<Formula, std::tuple<at::Tensor, at::Tensor>(Args...)> {
  static at::Tensor call(Args... args) { return Formula::apply(args...); }
};

}  // namespace gnnmd_geometry
