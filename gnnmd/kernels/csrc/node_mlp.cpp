// gnnmd::node_mlp: a bead-wise two-layer perceptron with its residual sum, as one registered op.
//
//   out = act(input W1ᵀ + b1) W2ᵀ + b2 (+ residual)
//   input (N, A), W1 (B, A), b1 (B,), W2 (C, B), b2 (C,), residual (N, C) or none.
// SchNet uses it twice: an interaction block's update x + dense(act(f2out(m))) and the readout
// (no residual). The pure-torch twin is those nn.Linear layers and activation modules.
//
// Why one op: as separate torch ops, a block's (N, F) features go through memory some six times
// forward and again backward (bias copies, the activation, its derivative, residual sums), each op
// with its autograd node. Here rows are taken in tiles that stay in cache from the first matrix
// product to the last, and a step dispatches two ops per block instead of about a dozen.
//
// Registered here:
//   node_mlp           autograd formula (C++), CPU and Meta through node_mlp_forward
//   node_mlp_forward   -> (out, act'(pre-activation)); the derivative only when asked for
//   node_mlp_backward  (grad, derivative, W1, W2) -> grad of the input (of the residual: grad)
// The weights are fixed (no weight gradients: train with the reference backend); first derivatives
// only. Activations: tanh, sigmoid, silu, ssp (softplus - log 2), mish.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <tuple>

#include "geometry.h"

namespace {

// Rows per tile: a tile's hidden activations (256 x 128 float32: 128 KiB) and its rows of the
// input and output stay in a core's L2 cache between the two products.
#ifndef TILE_ROWS
#define TILE_ROWS 256
#endif
constexpr int64_t kTileRows = TILE_ROWS;

enum class Activation { Tanh, Sigmoid, Silu, ShiftedSoftplus, Mish };

Activation parse_activation(c10::string_view name) {
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "silu") return Activation::Silu;
  if (name == "ssp") return Activation::ShiftedSoftplus;
  if (name == "mish") return Activation::Mish;
  TORCH_CHECK(false, "node_mlp: unknown activation '", std::string(name),
              "'; allowed: tanh, sigmoid, silu, ssp, mish");
}

void check_inputs(const at::Tensor& input, const at::Tensor& w1, const at::Tensor& b1,
                  const at::Tensor& w2, const at::Tensor& b2, const c10::optional<at::Tensor>& residual) {
  TORCH_CHECK(input.dim() == 2, "node_mlp: input must be (N, A), got ", input.sizes());
  TORCH_CHECK(w1.dim() == 2 && w1.size(1) == input.size(1), "node_mlp: weight1 must be (B, A) with A = ",
              input.size(1), ", got ", w1.sizes());
  TORCH_CHECK(b1.dim() == 1 && b1.size(0) == w1.size(0), "node_mlp: bias1 must be (", w1.size(0),
              ",), got ", b1.sizes());
  TORCH_CHECK(w2.dim() == 2 && w2.size(1) == w1.size(0), "node_mlp: weight2 must be (C, B) with B = ",
              w1.size(0), ", got ", w2.sizes());
  TORCH_CHECK(b2.dim() == 1 && b2.size(0) == w2.size(0), "node_mlp: bias2 must be (", w2.size(0),
              ",), got ", b2.sizes());
  TORCH_CHECK(!residual.has_value() || (residual->dim() == 2 && residual->size(0) == input.size(0) &&
                                        residual->size(1) == w2.size(0)),
              "node_mlp: residual must be (", input.size(0), ", ", w2.size(0), "), got ",
              residual.has_value() ? residual->sizes() : at::IntArrayRef{});
  const auto type = input.scalar_type();
  bool same = w1.scalar_type() == type && b1.scalar_type() == type && w2.scalar_type() == type &&
              b2.scalar_type() == type && (!residual.has_value() || residual->scalar_type() == type);
  TORCH_CHECK(same && (type == at::kFloat || type == at::kDouble),
              "node_mlp: input, weights, biases and residual must share one dtype, float32 or float64; "
              "got input ", type);
}

// A view of `rows` rows from `first` of a contiguous (N, width) array, without autograd history:
// the products below run on torch's worker threads, outside the caller's dispatch state.
template <typename real>
at::Tensor rows_of(real* data, int64_t first, int64_t rows, int64_t width, const at::TensorOptions& options) {
  return at::from_blob(data + first * width, {rows, width}, options);
}

template <typename real>
at::Tensor plain(const at::Tensor& contiguous) {
  return at::from_blob(contiguous.data_ptr<real>(), contiguous.sizes(), contiguous.options());
}

// pre (R, B) becomes act(pre) in place; derivative (R, B), if given, receives act'(pre).
template <typename real>
void activate(Activation kind, at::Tensor& pre, real* derivative) {
  real* a = pre.data_ptr<real>();
  const int64_t n = pre.numel();
  switch (kind) {
    case Activation::Tanh: {
      at::tanh_(pre);
      if (derivative) for (int64_t e = 0; e < n; ++e) derivative[e] = real(1) - a[e] * a[e];
      return;
    }
    case Activation::Sigmoid: {
      at::sigmoid_(pre);
      if (derivative) for (int64_t e = 0; e < n; ++e) derivative[e] = a[e] * (real(1) - a[e]);
      return;
    }
    case Activation::Silu: {
      const at::Tensor gate = at::sigmoid(pre);
      const real* s = gate.data_ptr<real>();
      for (int64_t e = 0; e < n; ++e) {
        if (derivative) derivative[e] = s[e] * (real(1) + a[e] * (real(1) - s[e]));
        a[e] *= s[e];
      }
      return;
    }
    case Activation::ShiftedSoftplus: {
      if (derivative) {
        at::Tensor slope = at::from_blob(derivative, pre.sizes(), pre.options());
        at::sigmoid_out(slope, pre);
        // softplus is the identity above its threshold (20), so its slope there is exactly 1.
        for (int64_t e = 0; e < n; ++e) derivative[e] = a[e] > real(20) ? real(1) : derivative[e];
      }
      at::softplus_out(pre, pre, 1, 20);
      const real shift = static_cast<real>(std::log(2.0));
      for (int64_t e = 0; e < n; ++e) a[e] -= shift;
      return;
    }
    case Activation::Mish: {
      const at::Tensor squashed = at::tanh(at::softplus(pre, 1, 20));
      const at::Tensor gate = derivative ? at::sigmoid(pre) : at::Tensor();
      const real* th = squashed.data_ptr<real>();
      for (int64_t e = 0; e < n; ++e) {
        if (derivative) {
          const real s = gate.data_ptr<real>()[e];
          derivative[e] = th[e] + a[e] * s * (real(1) - th[e] * th[e]);
        }
        a[e] *= th[e];
      }
      return;
    }
  }
}

std::tuple<at::Tensor, at::Tensor> node_mlp_forward_cpu(
    const at::Tensor& input, const at::Tensor& weight1, const at::Tensor& bias1,
    const at::Tensor& weight2, const at::Tensor& bias2, const c10::optional<at::Tensor>& residual,
    c10::string_view activation, bool with_derivative) {
  check_inputs(input, weight1, bias1, weight2, bias2, residual);
  const Activation kind = parse_activation(activation);
  const int64_t N = input.size(0), A = input.size(1), B = weight1.size(0), C = weight2.size(0);
  at::Tensor x = input.contiguous(), w1 = weight1.contiguous(), b1 = bias1.contiguous();
  at::Tensor w2 = weight2.contiguous(), b2 = bias2.contiguous();
  at::Tensor res = residual.has_value() ? residual->contiguous() : at::Tensor();
  at::Tensor out = at::empty({N, C}, x.options());
  at::Tensor derivative = with_derivative ? at::empty({N, B}, x.options()) : at::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "node_mlp_forward", [&] {
    const auto options = x.options().requires_grad(false);
    const at::Tensor w1t = plain<scalar_t>(w1).t(), w2t = plain<scalar_t>(w2).t();
    const at::Tensor b1p = plain<scalar_t>(b1), b2p = plain<scalar_t>(b2);
    const scalar_t* shift = b2.data_ptr<scalar_t>();
    const int64_t tiles = (N + kTileRows - 1) / kTileRows;
    at::parallel_for(0, tiles, 1, [&](int64_t first_tile, int64_t last_tile) {
      for (int64_t tile = first_tile; tile < last_tile; ++tile) {
        const int64_t row = tile * kTileRows, rows = std::min(kTileRows, N - row);
        at::Tensor hidden = at::empty({rows, B}, options);
        at::addmm_out(hidden, b1p, rows_of(x.data_ptr<scalar_t>(), row, rows, A, options), w1t);
        activate<scalar_t>(kind, hidden,
                           with_derivative ? derivative.data_ptr<scalar_t>() + row * B : nullptr);
        at::Tensor target = rows_of(out.data_ptr<scalar_t>(), row, rows, C, options);
        if (res.defined()) {
          const scalar_t* r = res.data_ptr<scalar_t>() + row * C;
          scalar_t* o = target.data_ptr<scalar_t>();
          for (int64_t i = 0; i < rows; ++i)
            for (int64_t c = 0; c < C; ++c) o[i * C + c] = r[i * C + c] + shift[c];
          target.addmm_(hidden, w2t);
        } else {
          at::addmm_out(target, b2p, hidden, w2t);
        }
      }
    });
  });
  return {out, derivative};
}

at::Tensor node_mlp_backward_cpu(const at::Tensor& grad, const at::Tensor& derivative,
                                 const at::Tensor& weight1, const at::Tensor& weight2) {
  const int64_t N = grad.size(0), A = weight1.size(1), B = weight1.size(0), C = weight2.size(0);
  TORCH_CHECK(grad.dim() == 2 && grad.size(1) == C && derivative.dim() == 2 && derivative.size(0) == N &&
                  derivative.size(1) == B && weight2.size(1) == B,
              "node_mlp_backward: grad (N, C), derivative (N, B), weight1 (B, A) and weight2 (C, B) "
              "do not match: ", grad.sizes(), ", ", derivative.sizes(), ", ", weight1.sizes(), ", ",
              weight2.sizes());
  at::Tensor d = derivative.contiguous(), w1 = weight1.contiguous(), w2 = weight2.contiguous();
  at::Tensor g = grad.contiguous().to(d.scalar_type());
  at::Tensor grad_input = at::empty({N, A}, d.options());
  AT_DISPATCH_FLOATING_TYPES(d.scalar_type(), "node_mlp_backward", [&] {
    const auto options = d.options().requires_grad(false);
    const at::Tensor w1p = plain<scalar_t>(w1), w2p = plain<scalar_t>(w2);
    const int64_t tiles = (N + kTileRows - 1) / kTileRows;
    at::parallel_for(0, tiles, 1, [&](int64_t first_tile, int64_t last_tile) {
      for (int64_t tile = first_tile; tile < last_tile; ++tile) {
        const int64_t row = tile * kTileRows, rows = std::min(kTileRows, N - row);
        at::Tensor hidden = at::empty({rows, B}, options);
        at::mm_out(hidden, rows_of(g.data_ptr<scalar_t>(), row, rows, C, options), w2p);
        scalar_t* h = hidden.data_ptr<scalar_t>();
        const scalar_t* slope = d.data_ptr<scalar_t>() + row * B;
        for (int64_t e = 0; e < rows * B; ++e) h[e] *= slope[e];
        at::Tensor target = rows_of(grad_input.data_ptr<scalar_t>(), row, rows, A, options);
        at::mm_out(target, hidden, w1p);
      }
    });
  });
  return grad_input;
}

std::tuple<at::Tensor, at::Tensor> node_mlp_forward_meta(
    const at::Tensor& input, const at::Tensor& weight1, const at::Tensor& bias1,
    const at::Tensor& weight2, const at::Tensor& bias2, const c10::optional<at::Tensor>& residual,
    c10::string_view activation, bool with_derivative) {
  check_inputs(input, weight1, bias1, weight2, bias2, residual);
  parse_activation(activation);
  at::Tensor derivative = with_derivative ? at::empty({input.size(0), weight1.size(0)}, input.options())
                                          : at::empty({0}, input.options());
  return {at::empty({input.size(0), weight2.size(0)}, input.options()), derivative};
}

at::Tensor node_mlp_backward_meta(const at::Tensor& grad, const at::Tensor& derivative,
                                  const at::Tensor& weight1, const at::Tensor&) {
  return at::empty({grad.size(0), weight1.size(1)}, derivative.options());
}

at::Tensor node_mlp_cpu(const at::Tensor& input, const at::Tensor& weight1, const at::Tensor& bias1,
                        const at::Tensor& weight2, const at::Tensor& bias2,
                        const c10::optional<at::Tensor>& residual, c10::string_view activation) {
  return std::get<0>(node_mlp_forward_cpu(input, weight1, bias1, weight2, bias2, residual, activation, false));
}

at::Tensor node_mlp_meta(const at::Tensor& input, const at::Tensor& weight1, const at::Tensor& bias1,
                         const at::Tensor& weight2, const at::Tensor& bias2,
                         const c10::optional<at::Tensor>& residual, c10::string_view activation) {
  return std::get<0>(node_mlp_forward_meta(input, weight1, bias1, weight2, bias2, residual, activation, false));
}

class NodeMlp : public torch::autograd::Function<NodeMlp> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            const at::Tensor& weight1, const at::Tensor& bias1, const at::Tensor& weight2,
                            const at::Tensor& bias2, const c10::optional<at::Tensor>& residual,
                            c10::string_view activation) {
    TORCH_CHECK(!weight1.requires_grad() && !bias1.requires_grad() && !weight2.requires_grad() &&
                    !bias2.requires_grad(),
                "node_mlp: the weights are fixed (the native op gives no weight gradients); train "
                "with the reference backend");
    const bool needed = input.requires_grad() || (residual.has_value() && residual->requires_grad());
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("gnnmd::node_mlp_forward", "")
                         .typed<decltype(node_mlp_forward_cpu)>();
    auto [out, derivative] = op.call(input, weight1, bias1, weight2, bias2, residual, activation, needed);
    ctx->save_for_backward({derivative, weight1, weight2});
    ctx->saved_data["residual"] = residual.has_value();
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    gnnmd_geometry::require_first_derivatives("node_mlp");
    auto saved = ctx->get_saved_variables();
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("gnnmd::node_mlp_backward", "")
                         .typed<decltype(node_mlp_backward_cpu)>();
    at::Tensor grad_input = op.call(grads[0], saved[0], saved[1], saved[2]);
    at::Tensor grad_residual = ctx->saved_data["residual"].toBool() ? grads[0] : at::Tensor();
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), grad_residual, at::Tensor()};
  }
};

at::Tensor node_mlp_autograd(const at::Tensor& input, const at::Tensor& weight1, const at::Tensor& bias1,
                             const at::Tensor& weight2, const at::Tensor& bias2,
                             const c10::optional<at::Tensor>& residual, c10::string_view activation) {
  return NodeMlp::apply(input, weight1, bias1, weight2, bias2, residual, activation);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gnnmd, m) {
  m.def(
      "node_mlp(Tensor input, Tensor weight1, Tensor bias1, Tensor weight2, Tensor bias2, "
      "Tensor? residual, str activation) -> Tensor");
  m.def(
      "node_mlp_forward(Tensor input, Tensor weight1, Tensor bias1, Tensor weight2, Tensor bias2, "
      "Tensor? residual, str activation, bool with_derivative) -> (Tensor, Tensor)");
  m.def("node_mlp_backward(Tensor grad, Tensor derivative, Tensor weight1, Tensor weight2) -> Tensor");
}

TORCH_LIBRARY_IMPL(gnnmd, CPU, m) {
  m.impl("node_mlp", &node_mlp_cpu);
  m.impl("node_mlp_forward", &node_mlp_forward_cpu);
  m.impl("node_mlp_backward", &node_mlp_backward_cpu);
}

TORCH_LIBRARY_IMPL(gnnmd, Meta, m) {
  m.impl("node_mlp", &node_mlp_meta);
  m.impl("node_mlp_forward", &node_mlp_forward_meta);
  m.impl("node_mlp_backward", &node_mlp_backward_meta);
}

TORCH_LIBRARY_IMPL(gnnmd, Autograd, m) {
  m.impl("node_mlp", &node_mlp_autograd);
}
