// gnnmd::tabulated_network: a tabulated SchNet's interaction blocks and readout as one registered op.
//
// For bead features x0 (N, H) (type embedding plus whatever the model adds before its blocks) and
// the pairs (2, E) i<j with distances r (E,) in nm, block k computes
//     h = x W_in2f^T                      (N, F)
//     m = tabulated_conv(h, pairs, r)     (N, F)  (the spline filters of csrc/tabulated_conv.cpp)
//     z = m W_f2out^T + b_f2out           (N, H)
//     x <- x + act(z) W_dense^T + b_dense (N, H)
// and the readout a <- act_r(a W_l^T + b_l) over its hidden layers, then e = a W_L^T + b_L:
// the per-bead energies (N,) in kJ/mol.
//
// Why one op: at one small molecule (OpenMM's TorchForce with one replica) a step is ~150 small
// torch ops with their autograd nodes and TorchScript's interpreter around them, which cost more
// than their arithmetic. Here the forward keeps what the gradient needs (h and the activation's
// input or output per block and readout layer) and the backward is the hand-written chain rule:
// one autograd node for the whole network. First derivatives only (forces), with respect to x0 and
// the distances; the weights are fixed (tabulated models are frozen).
//
// Registered:
//   tabulated_network           CPU and Meta kernels (energies), autograd formula (C++)
//   tabulated_network_saved     CPU and Meta: energies and the tensors the backward needs
//   tabulated_network_backward  CPU and Meta: (dE/dx0, dE/dr) for a given dE/de (dE/dx0 zero
//                               unless x0_grad: its last product is skipped)
// Weights come as one flat list, six per block (W_in2f (F, H), W_f2out (H, F), b_f2out (H),
// W_dense (H, H), b_dense (H), spline coefficients (S, 4, F), also float16), and the
// readout as (W_1, b_1, ..., W_L, b_L) with W_L of one row. Activations: tanh, ssp, silu,
// sigmoid, mish.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "geometry.h"

namespace {

enum class Act { Tanh, Ssp, Silu, Sigmoid, Mish };

Act parse_activation(const std::string& name) {
  if (name == "tanh") return Act::Tanh;
  if (name == "ssp") return Act::Ssp;
  if (name == "silu") return Act::Silu;
  if (name == "sigmoid") return Act::Sigmoid;
  if (name == "mish") return Act::Mish;
  TORCH_CHECK(false, "tabulated_network: unknown activation '", name,
              "'; allowed: tanh, ssp, silu, sigmoid, mish");
}

at::Tensor activate(Act act, const at::Tensor& z) {
  switch (act) {
    case Act::Tanh: return at::tanh(z);
    case Act::Ssp: return at::softplus(z, 1, 20).sub_(M_LN2);  // shifted softplus: ssp(0) = 0
    case Act::Silu: return at::silu(z);
    case Act::Sigmoid: return at::sigmoid(z);
    case Act::Mish: return at::mish(z);
  }
  return z;
}

// tanh' and sigmoid' are cheapest from the output; the others need the input.
bool keeps_output(Act act) { return act == Act::Tanh || act == Act::Sigmoid; }

// g * act'(z), from what the forward kept (the output or the input, see keeps_output).
at::Tensor activation_grad(Act act, const at::Tensor& g, const at::Tensor& kept) {
  switch (act) {
    case Act::Tanh: return at::tanh_backward(g, kept);
    case Act::Sigmoid: return at::sigmoid_backward(g, kept);
    case Act::Ssp: return at::softplus_backward(g, kept, 1, 20);
    case Act::Silu: return at::silu_backward(g, kept);
    case Act::Mish: return at::mish_backward(g, kept);
  }
  return g;
}

constexpr int64_t kPerBlock = 6;
constexpr int64_t kTable = 5;  // the spline coefficients' place among a block's six

// add + a w^T: a (N, in), w (out, in), add (N, out), (out,) or undefined. (Cutting small products
// into one row range per thread was measured: no faster at one chignolin, (49, 128) rows.)
at::Tensor linear(const at::Tensor& a, const at::Tensor& w, const at::Tensor& add) {
  return add.defined() ? at::addmm(add, a, w.t()) : at::mm(a, w.t());
}

struct Layout {
  int64_t blocks;
  int64_t readout_layers;  // including the last (one-output) layer
};

Layout check_inputs(const at::Tensor& x0, const at::Tensor& pairs, const at::Tensor& r,
                    at::TensorList blocks, at::TensorList readout,
                    at::ArrayRef<double> inv_spacings, at::ArrayRef<double> cutoffs) {
  TORCH_CHECK(x0.dim() == 2, "tabulated_network: features must be (N, H), got ", x0.sizes());
  TORCH_CHECK(pairs.dim() == 2 && pairs.size(0) == 2 && pairs.scalar_type() == at::kLong,
              "tabulated_network: pairs must be int64 (2, E), got ", pairs.sizes());
  TORCH_CHECK(r.dim() == 1 && r.size(0) == pairs.size(1),
              "tabulated_network: distances must be (E,) with E = ", pairs.size(1));
  TORCH_CHECK(blocks.size() % kPerBlock == 0, "tabulated_network: ", kPerBlock,
              " tensors per block expected, got ", blocks.size());
  const int64_t count = static_cast<int64_t>(blocks.size()) / kPerBlock;
  TORCH_CHECK(static_cast<int64_t>(inv_spacings.size()) == count &&
                  static_cast<int64_t>(cutoffs.size()) == count,
              "tabulated_network: one grid spacing and cutoff per block expected");
  TORCH_CHECK(readout.size() >= 2 && readout.size() % 2 == 0,
              "tabulated_network: readout must be (W_1, b_1, ..., W_L, b_L)");
  const int64_t H = x0.size(1);
  for (int64_t k = 0; k < count; ++k) {
    const at::Tensor& in2f = blocks[k * kPerBlock];
    const at::Tensor& table = blocks[k * kPerBlock + kTable];
    TORCH_CHECK(in2f.dim() == 2 && in2f.size(1) == H, "tabulated_network: block ", k,
                " W_in2f must be (F, ", H, "), got ", in2f.sizes());
    TORCH_CHECK(table.dim() == 3 && table.size(1) == 4 && table.size(2) == in2f.size(0),
                "tabulated_network: block ", k, " coefficients must be (S, 4, F), got ",
                table.sizes());
  }
  for (size_t index = 0; index < blocks.size(); ++index) {
    const at::Tensor& t = blocks[index];
    // A block's spline table may be float16 (tabulated_conv reads or widens it).
    const bool half_table =
        static_cast<int64_t>(index) % kPerBlock == kTable && t.scalar_type() == at::kHalf;
    TORCH_CHECK((t.scalar_type() == x0.scalar_type() || half_table) && !t.requires_grad(),
                "tabulated_network: weights must share the features' dtype (spline tables may also "
                "be float16) and be fixed (tabulated models are frozen; train "
                "with the reference backend)");
  }
  for (const at::Tensor& t : readout) {
    TORCH_CHECK(t.scalar_type() == x0.scalar_type() && !t.requires_grad(),
                "tabulated_network: readout weights must share the features' dtype and be fixed");
  }
  TORCH_CHECK(readout[readout.size() - 2].size(0) == 1,
              "tabulated_network: the readout's last layer must have one output");
  return {count, static_cast<int64_t>(readout.size()) / 2};
}

at::Tensor conv(const at::Tensor& h, const at::Tensor& pairs, const at::Tensor& r,
                const at::Tensor& table, double inv_spacing, double cutoff) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("gnnmd::tabulated_conv", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, double, double)>();
  return op.call(h, pairs, r, table, inv_spacing, cutoff);
}

std::tuple<at::Tensor, at::Tensor> conv_backward(const at::Tensor& grad, const at::Tensor& h,
                                                 const at::Tensor& pairs, const at::Tensor& r,
                                                 const at::Tensor& table, double inv_spacing,
                                                 double cutoff) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("gnnmd::tabulated_conv_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, const at::Tensor&, double, double)>();
  return op.call(grad, h, pairs, r, table, inv_spacing, cutoff);
}

// Energies (N,) and what the backward needs: per block h and the activation's kept tensor, per
// hidden readout layer the kept tensor.
std::tuple<at::Tensor, std::vector<at::Tensor>> network_forward(
    const at::Tensor& x0, const at::Tensor& pairs, const at::Tensor& distances,
    at::TensorList blocks, at::ArrayRef<double> inv_spacings, at::ArrayRef<double> cutoffs,
    at::TensorList readout, const std::string& act_name, const std::string& readout_act_name) {
  const Layout layout = check_inputs(x0, pairs, distances, blocks, readout, inv_spacings, cutoffs);
  const Act act = parse_activation(act_name), readout_act = parse_activation(readout_act_name);
  at::AutoDispatchBelowADInplaceOrView guard;
  const at::Tensor p = pairs.contiguous(), r = distances.contiguous();
  std::vector<at::Tensor> saved;
  at::Tensor x = x0.contiguous();
  for (int64_t k = 0; k < layout.blocks; ++k) {
    const at::Tensor* w = &blocks[k * kPerBlock];
    at::Tensor h = linear(x, w[0], at::Tensor());
    at::Tensor z = linear(conv(h, p, r, w[5], inv_spacings[k], cutoffs[k]), w[1], w[2]);
    at::Tensor a = activate(act, z);
    x = linear(a, w[3], x).add_(w[4]);
    saved.push_back(h);
    saved.push_back(keeps_output(act) ? a : z);
  }
  at::Tensor a = x;
  for (int64_t l = 0; l + 1 < layout.readout_layers; ++l) {
    at::Tensor u = linear(a, readout[2 * l], readout[2 * l + 1]);
    a = activate(readout_act, u);
    saved.push_back(keeps_output(readout_act) ? a : u);
  }
  const int64_t last = layout.readout_layers - 1;
  at::Tensor energies = linear(a, readout[2 * last], readout[2 * last + 1]).squeeze(1);
  return {energies, saved};
}

at::Tensor tabulated_network_cpu(const at::Tensor& x0, const at::Tensor& pairs,
                                 const at::Tensor& distances, at::TensorList blocks,
                                 at::ArrayRef<double> inv_spacings, at::ArrayRef<double> cutoffs,
                                 at::TensorList readout, c10::string_view act,
                                 c10::string_view readout_act) {
  return std::get<0>(network_forward(x0, pairs, distances, blocks, inv_spacings, cutoffs, readout,
                                     std::string(act), std::string(readout_act)));
}

std::tuple<at::Tensor, std::vector<at::Tensor>> tabulated_network_saved_cpu(
    const at::Tensor& x0, const at::Tensor& pairs, const at::Tensor& distances,
    at::TensorList blocks, at::ArrayRef<double> inv_spacings, at::ArrayRef<double> cutoffs,
    at::TensorList readout, c10::string_view act, c10::string_view readout_act) {
  return network_forward(x0, pairs, distances, blocks, inv_spacings, cutoffs, readout,
                         std::string(act), std::string(readout_act));
}

std::tuple<at::Tensor, at::Tensor> tabulated_network_backward_cpu(
    const at::Tensor& grad, at::TensorList saved, const at::Tensor& x0, const at::Tensor& pairs,
    const at::Tensor& distances, at::TensorList blocks, at::ArrayRef<double> inv_spacings,
    at::ArrayRef<double> cutoffs, at::TensorList readout, c10::string_view act_name,
    c10::string_view readout_act_name, bool x0_grad) {
  const Layout layout = check_inputs(x0, pairs, distances, blocks, readout, inv_spacings, cutoffs);
  const Act act = parse_activation(std::string(act_name));
  const Act readout_act = parse_activation(std::string(readout_act_name));
  TORCH_CHECK(static_cast<int64_t>(saved.size()) == 2 * layout.blocks + layout.readout_layers - 1,
              "tabulated_network_backward: saved tensors do not match the network's layout");
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == x0.size(0),
              "tabulated_network_backward: grad must be (N,) with N = ", x0.size(0));
  at::AutoDispatchBelowADInplaceOrView guard;  // first derivatives only: nothing here is recorded
  const at::Tensor p = pairs.contiguous(), r = distances.contiguous();
  const int64_t last = layout.readout_layers - 1;
  // Readout, last layer first: dE/da = g W_L; through each hidden layer dE/du = dE/da * act'(u).
  at::Tensor ga = at::mm(grad.to(x0.scalar_type()).unsqueeze(1), readout[2 * last]);
  for (int64_t l = last - 1; l >= 0; --l) {
    ga = linear(activation_grad(readout_act, ga, saved[2 * layout.blocks + l]), readout[2 * l].t(),
                at::Tensor());
  }
  // Blocks, last first: x_k+1 = x_k + act(z) W_d^T + b_d, z = conv(x_k W_in^T) W_f^T + b_f.
  at::Tensor gx = ga, grad_r = at::zeros_like(r);
  for (int64_t k = layout.blocks - 1; k >= 0; --k) {
    const at::Tensor* w = &blocks[k * kPerBlock];
    at::Tensor gz = activation_grad(act, linear(gx, w[3].t(), at::Tensor()), saved[2 * k + 1]);
    auto [gh, gr] = conv_backward(linear(gz, w[1].t(), at::Tensor()), saved[2 * k], p, r, w[5],
                                  inv_spacings[k], cutoffs[k]);
    grad_r.add_(gr);
    // The first block's input gradient is dE/dx0, which nothing may need (x0 = type embeddings).
    if (k > 0 || x0_grad) gx = linear(gh, w[0].t(), gx);
  }
  return {x0_grad ? gx : at::zeros_like(x0), grad_r};
}

at::Tensor tabulated_network_meta(const at::Tensor& x0, const at::Tensor& pairs,
                                  const at::Tensor& distances, at::TensorList blocks,
                                  at::ArrayRef<double> inv_spacings, at::ArrayRef<double> cutoffs,
                                  at::TensorList readout, c10::string_view, c10::string_view) {
  check_inputs(x0, pairs, distances, blocks, readout, inv_spacings, cutoffs);
  return at::empty({x0.size(0)}, x0.options());
}

std::tuple<at::Tensor, std::vector<at::Tensor>> tabulated_network_saved_meta(
    const at::Tensor& x0, const at::Tensor& pairs, const at::Tensor& distances,
    at::TensorList blocks, at::ArrayRef<double> inv_spacings, at::ArrayRef<double> cutoffs,
    at::TensorList readout, c10::string_view, c10::string_view) {
  const Layout layout = check_inputs(x0, pairs, distances, blocks, readout, inv_spacings, cutoffs);
  std::vector<at::Tensor> saved;
  for (int64_t k = 0; k < layout.blocks; ++k) {
    saved.push_back(at::empty({x0.size(0), blocks[k * kPerBlock].size(0)}, x0.options()));
    saved.push_back(at::empty_like(x0));
  }
  for (int64_t l = 0; l + 1 < layout.readout_layers; ++l) {
    saved.push_back(at::empty({x0.size(0), readout[2 * l].size(0)}, x0.options()));
  }
  return {at::empty({x0.size(0)}, x0.options()), saved};
}

std::tuple<at::Tensor, at::Tensor> tabulated_network_backward_meta(
    const at::Tensor&, at::TensorList, const at::Tensor& x0, const at::Tensor& pairs,
    const at::Tensor& distances, at::TensorList blocks, at::ArrayRef<double> inv_spacings,
    at::ArrayRef<double> cutoffs, at::TensorList readout, c10::string_view, c10::string_view, bool) {
  check_inputs(x0, pairs, distances, blocks, readout, inv_spacings, cutoffs);
  return {at::empty_like(x0), at::empty_like(distances)};
}

// The fixed arguments (weights, grids, activations): not differentiated, kept in saved_data.
class TabulatedNetwork : public torch::autograd::Function<TabulatedNetwork> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x0,
                            const at::Tensor& pairs, const at::Tensor& distances,
                            at::TensorList blocks, at::ArrayRef<double> inv_spacings,
                            at::ArrayRef<double> cutoffs, at::TensorList readout,
                            const std::string& act, const std::string& readout_act) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("gnnmd::tabulated_network_saved", "")
                         .typed<decltype(tabulated_network_saved_cpu)>();
    auto [energies, saved] =
        op.call(x0, pairs, distances, blocks, inv_spacings, cutoffs, readout, act, readout_act);
    ctx->saved_data["kept"] = static_cast<int64_t>(saved.size());
    // apply() counts every tensor of a list as an input, and each other argument as one.
    ctx->saved_data["inputs"] = static_cast<int64_t>(3 + blocks.size() + readout.size() + 4);
    saved.push_back(x0);
    saved.push_back(pairs);
    saved.push_back(distances);
    ctx->save_for_backward(saved);
    ctx->saved_data["blocks"] = blocks.vec();
    ctx->saved_data["readout"] = readout.vec();
    ctx->saved_data["inv_spacings"] = inv_spacings.vec();
    ctx->saved_data["cutoffs"] = cutoffs.vec();
    ctx->saved_data["act"] = act;
    ctx->saved_data["readout_act"] = readout_act;
    return energies;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    gnnmd_geometry::require_first_derivatives("tabulated_network");
    const auto saved = ctx->get_saved_variables();
    const int64_t kept = ctx->saved_data["kept"].toInt();
    const std::vector<at::Tensor> network(saved.begin(), saved.begin() + kept);
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("gnnmd::tabulated_network_backward", "")
                         .typed<decltype(tabulated_network_backward_cpu)>();
    auto& data = ctx->saved_data;
    const auto blocks = data["blocks"].toTensorVector(), readout = data["readout"].toTensorVector();
    const auto inv_spacings = data["inv_spacings"].toDoubleVector();
    const auto cutoffs = data["cutoffs"].toDoubleVector();
    auto [grad_x0, grad_r] =
        op.call(grads[0].contiguous(), network, saved[kept], saved[kept + 1], saved[kept + 2],
                blocks, inv_spacings, cutoffs, readout, data["act"].toStringRef(),
                data["readout_act"].toStringRef(), ctx->needs_input_grad(0));
    torch::autograd::variable_list result(data["inputs"].toInt());
    result[0] = grad_x0;
    result[2] = grad_r;
    return result;
  }
};

at::Tensor tabulated_network_autograd(const at::Tensor& x0, const at::Tensor& pairs,
                                      const at::Tensor& distances, at::TensorList blocks,
                                      at::ArrayRef<double> inv_spacings,
                                      at::ArrayRef<double> cutoffs, at::TensorList readout,
                                      c10::string_view act, c10::string_view readout_act) {
  return TabulatedNetwork::apply(x0, pairs, distances, blocks, inv_spacings, cutoffs, readout,
                                 std::string(act), std::string(readout_act));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(gnnmd, m) {
  m.def(
      "tabulated_network(Tensor x0, Tensor pairs, Tensor distances, Tensor[] blocks, "
      "float[] inv_spacings, float[] cutoffs, Tensor[] readout, str act, str readout_act) -> Tensor");
  m.def(
      "tabulated_network_saved(Tensor x0, Tensor pairs, Tensor distances, Tensor[] blocks, "
      "float[] inv_spacings, float[] cutoffs, Tensor[] readout, str act, str readout_act) "
      "-> (Tensor, Tensor[])");
  m.def(
      "tabulated_network_backward(Tensor grad, Tensor[] saved, Tensor x0, Tensor pairs, "
      "Tensor distances, Tensor[] blocks, float[] inv_spacings, float[] cutoffs, Tensor[] readout, "
      "str act, str readout_act, bool x0_grad) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(gnnmd, CPU, m) {
  m.impl("tabulated_network", &tabulated_network_cpu);
  m.impl("tabulated_network_saved", &tabulated_network_saved_cpu);
  m.impl("tabulated_network_backward", &tabulated_network_backward_cpu);
}

TORCH_LIBRARY_IMPL(gnnmd, Meta, m) {
  m.impl("tabulated_network", &tabulated_network_meta);
  m.impl("tabulated_network_saved", &tabulated_network_saved_meta);
  m.impl("tabulated_network_backward", &tabulated_network_backward_meta);
}

TORCH_LIBRARY_IMPL(gnnmd, Autograd, m) {
  m.impl("tabulated_network", &tabulated_network_autograd);
}
