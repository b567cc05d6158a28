// gnnmd::bonded_priors: the bonded prior energy of every graph (kJ/mol) with its gradient, in one call.
//
// The terms of gnnmd.nn.priors (their pure-torch twins; formulas and units there):
//   bonds      E = k/2 (r - r0)^2                              k kJ/mol/nm^2, r0 nm
//   angles     E = k/2 (theta - theta0)^2  or  k/2 (cos theta - cos theta0)^2   (cosine_angles)
//   dihedrals  E = c + sum_n a_n cos(n phi) + b_n sin(n phi)   (IUPAC phi, trans = +-pi)
// A term's parameters are the row of its prior-type tuple, canonically oriented (a term and its
// reverse share parameters) and keyed sum_c t_c P^(k-1-c), found by binary search in the sorted keys.
// The energy of a term goes to the graph of its first bead.
//   bonded_priors            autograd formula (C++): energies (G,), gradient computed alongside
//   bonded_priors_forward    CPU kernel, Meta kernel: (energies (G,), dE/dx (N, 3))
// First derivatives only. Where the twin's autograd gives a zero gradient (a bond of length zero, a
// bond angle of exactly 0 or pi) so does the op; where it gives NaN (an angle with two beads on one
// point, a dihedral with three collinear beads) the op gives NaN too.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "geometry.h"

namespace {

using gnnmd_geometry::cross;
using gnnmd_geometry::dot;
using gnnmd_geometry::Frame;
using gnnmd_geometry::Vec;

struct Terms {
  at::Tensor indices, keys;  // (M, k) int64, (K,) int64 sorted
  const char* name;
};

// The parameter row of term m (k beads), or an error naming the term.
int64_t row_of(const Terms& terms, int64_t m, const int64_t* types, int64_t num_types) {
  const int64_t order = terms.indices.size(1);
  const int64_t* beads = terms.indices.data_ptr<int64_t>() + m * order;
  int64_t t[4];
  for (int64_t c = 0; c < order; ++c) t[c] = types[beads[c]];
  bool swap = order == 4 ? (t[0] > t[3] || (t[0] == t[3] && t[1] > t[2])) : t[0] > t[order - 1];
  if (swap) std::reverse(t, t + order);
  int64_t key = 0;
  for (int64_t c = 0; c < order; ++c) key = key * num_types + t[c];
  const int64_t *first = terms.keys.data_ptr<int64_t>(), *last = first + terms.keys.numel();
  const int64_t* found = std::lower_bound(first, last, key);
  TORCH_CHECK(found != last && *found == key, "bonded_priors: ", terms.name, " ", m,
              " has no parameters for its prior types (key ", key, ")");
  return found - first;
}

template <typename real>
struct Accumulator {
  Frame<real> frame;
  real* energy;
  real* gradient;
  void add(int64_t bead, const Vec<real>& v) { gnnmd_geometry::add_to(gradient, bead, v); }
  void add_energy(int64_t bead, real e) { energy[frame.graph[bead]] += e; }
  // A term whose angle is undefined has no gradient: NaN on its beads, as the twin's autograd gives,
  // so a run that collapses beads stops with the non-finite-state error instead of going on.
  void undefined(const int64_t* beads, int count) {
    const real nan = std::numeric_limits<real>::quiet_NaN();
    for (int c = 0; c < count; ++c) add(beads[c], {nan, nan, nan});
  }
};

template <typename real>
void bonds(Accumulator<real>& out, const int64_t* b, int64_t m, const real* k, const real* r0) {
  const Vec<real> v = out.frame.displacement(b[0], b[1]);
  const real r = gnnmd_geometry::norm(v), deviation = r - r0[m];
  out.add_energy(b[0], real(0.5) * k[m] * deviation * deviation);
  if (r == real(0)) return;
  const Vec<real> g = v * (k[m] * deviation / r);
  out.add(b[1], g);
  out.add(b[0], -g);
}

template <typename real>
void angle(Accumulator<real>& out, const int64_t* a, int64_t m, const real* k, const real* rest, bool cosine) {
  const Vec<real> u = out.frame.displacement(a[1], a[0]), w = out.frame.displacement(a[1], a[2]);
  const real uu = dot(u, u), ww = dot(w, w), c = dot(u, w);
  Vec<real> gu, gw;
  if (cosine) {
    const real lengths = std::sqrt(uu * ww), cos_theta = c / lengths, slope = k[m] * (cos_theta - rest[m]);
    out.add_energy(a[0], real(0.5) * k[m] * (cos_theta - rest[m]) * (cos_theta - rest[m]));
    gu = (w * (real(1) / lengths) - u * (cos_theta / uu)) * slope;
    gw = (u * (real(1) / lengths) - w * (cos_theta / ww)) * slope;
  } else {
    const real s = gnnmd_geometry::norm(cross(u, w)), theta = std::atan2(s, c);
    out.add_energy(a[0], real(0.5) * k[m] * (theta - rest[m]) * (theta - rest[m]));
    if (s == real(0) && uu != real(0) && ww != real(0)) return;  // collinear: zero, as the twin gives
    if (s == real(0)) return out.undefined(a, 3);  // two beads on one point: the angle is undefined
    const real slope = k[m] * (theta - rest[m]);
    gu = (u * c - w * uu) * (slope / (s * uu));
    gw = (w * c - u * ww) * (slope / (s * ww));
  }
  out.add(a[0], gu);
  out.add(a[2], gw);
  out.add(a[1], -(gu + gw));
}

template <typename real>
void dihedral(Accumulator<real>& out, const int64_t* d, int64_t m, int64_t harmonics, const real* a,
              const real* b, const real* constant) {
  const Vec<real> b1 = out.frame.displacement(d[0], d[1]), b2 = out.frame.displacement(d[1], d[2]),
                  b3 = out.frame.displacement(d[2], d[3]);
  const Vec<real> n1 = cross(b1, b2), n2 = cross(b2, b3);
  const real length = gnnmd_geometry::norm(b2);
  const real phi = std::atan2(dot(cross(n1, n2), b2) / length, dot(n1, n2));
  real energy = constant[m], slope = 0;
  for (int64_t n = 1; n <= harmonics; ++n) {
    const real an = a[m * harmonics + n - 1], bn = b[m * harmonics + n - 1];
    const real c = std::cos(n * phi), s = std::sin(n * phi);
    energy += an * c + bn * s;
    slope += n * (bn * c - an * s);
  }
  out.add_energy(d[0], energy);
  const real nn1 = dot(n1, n1), nn2 = dot(n2, n2);
  if (nn1 == real(0) || nn2 == real(0)) return out.undefined(d, 4);  // collinear: phi is undefined
  // dphi/dx (Blondel & Karplus 1996, J. Comput. Chem. 17, 1132) with F = -b1, G = -b2, H = b3.
  const Vec<real> gi = n1 * (-length / nn1), gl = n2 * (length / nn2);
  const Vec<real> shared = n1 * (dot(b1, b2) / (nn1 * length)) + n2 * (dot(b3, b2) / (nn2 * length));
  out.add(d[0], gi * slope);
  out.add(d[3], gl * slope);
  out.add(d[1], (shared - gi) * slope);
  out.add(d[2], (-(gl + shared)) * slope);
}

void check_table(const Terms& terms, int64_t order, const std::vector<at::Tensor>& rows, int64_t beads) {
  TORCH_CHECK(terms.indices.dim() == 2 && terms.indices.size(1) == order, "bonded_priors: ", terms.name,
              "s must be (M, ", order, "), got ", terms.indices.sizes());
  gnnmd_geometry::check_indices("bonded_priors", terms.name, terms.indices, beads);
  TORCH_CHECK(terms.keys.dim() == 1 && terms.keys.scalar_type() == at::kLong, "bonded_priors: ",
              terms.name, " keys must be int64 (K,)");
  for (const at::Tensor& row : rows) {
    TORCH_CHECK(row.size(0) == terms.keys.size(0), "bonded_priors: ", terms.name, " parameters have ",
                row.size(0), " rows for ", terms.keys.size(0), " keys");
  }
}

using Result = std::tuple<at::Tensor, at::Tensor>;

Result bonded_priors_forward_cpu(
    const at::Tensor& positions, const at::Tensor& graph_index, const c10::optional<at::Tensor>& box,
    int64_t num_graphs, const at::Tensor& bead_prior_types, int64_t num_prior_types,
    const at::Tensor& bond_terms, const at::Tensor& bond_keys, const at::Tensor& bond_k,
    const at::Tensor& bond_r0, const at::Tensor& angle_terms, const at::Tensor& angle_keys,
    const at::Tensor& angle_k, const at::Tensor& angle_rest, bool cosine_angles,
    const at::Tensor& dihedral_terms, const at::Tensor& dihedral_keys, const at::Tensor& dihedral_cos,
    const at::Tensor& dihedral_sin, const at::Tensor& dihedral_constant) {
  gnnmd_geometry::check_frame("bonded_priors", positions, graph_index, box);
  const int64_t beads = positions.size(0);
  TORCH_CHECK(bead_prior_types.dim() == 1 && bead_prior_types.size(0) == beads, "bonded_priors: "
              "bead_prior_types must be (N,) with N = ", beads, ", got ", bead_prior_types.sizes());
  TORCH_CHECK(dihedral_cos.dim() == 2 && dihedral_cos.sizes() == dihedral_sin.sizes(),
              "bonded_priors: dihedral cos and sin coefficients must be (K, M) alike, got ",
              dihedral_cos.sizes(), " and ", dihedral_sin.sizes());
  Terms bonds_{bond_terms.contiguous(), bond_keys.contiguous(), "bond"};
  Terms angles_{angle_terms.contiguous(), angle_keys.contiguous(), "angle"};
  Terms dihedrals_{dihedral_terms.contiguous(), dihedral_keys.contiguous(), "dihedral"};
  check_table(bonds_, 2, {bond_k, bond_r0}, beads);
  check_table(angles_, 3, {angle_k, angle_rest}, beads);
  check_table(dihedrals_, 4, {dihedral_cos, dihedral_sin, dihedral_constant}, beads);
  gnnmd_geometry::check_indices("bonded_priors", "graph_index", graph_index, std::max<int64_t>(num_graphs, 0));
  at::Tensor x = positions.contiguous(), graph = graph_index.contiguous();
  at::Tensor types = bead_prior_types.contiguous();
  gnnmd_geometry::check_indices("bonded_priors", "bead_prior_types", types, num_prior_types);
  at::Tensor energy = at::zeros({num_graphs}, x.options()), gradient = at::zeros_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bonded_priors", [&] {
    auto data = [&](const at::Tensor& t) {
      TORCH_CHECK(t.scalar_type() == x.scalar_type(), "bonded_priors: parameters must have the "
                  "positions' dtype ", x.scalar_type(), ", got ", t.scalar_type());
      return t.contiguous();
    };
    at::Tensor k2 = data(bond_k), r0 = data(bond_r0), k3 = data(angle_k), rest = data(angle_rest);
    at::Tensor ca = data(dihedral_cos), sa = data(dihedral_sin), c0 = data(dihedral_constant);
    c10::optional<at::Tensor> b = box.has_value() ? c10::optional<at::Tensor>(data(*box)) : c10::nullopt;
    Accumulator<scalar_t> out{{x.data_ptr<scalar_t>(), graph.data_ptr<int64_t>(),
                               b.has_value() ? b->data_ptr<scalar_t>() : nullptr},
                              energy.data_ptr<scalar_t>(), gradient.data_ptr<scalar_t>()};
    const int64_t* t = types.data_ptr<int64_t>();
    const int64_t P = num_prior_types;
    for (int64_t m = 0; m < bonds_.indices.size(0); ++m) {
      bonds<scalar_t>(out, bonds_.indices.data_ptr<int64_t>() + 2 * m, row_of(bonds_, m, t, P),
                      k2.data_ptr<scalar_t>(), r0.data_ptr<scalar_t>());
    }
    for (int64_t m = 0; m < angles_.indices.size(0); ++m) {
      angle<scalar_t>(out, angles_.indices.data_ptr<int64_t>() + 3 * m, row_of(angles_, m, t, P),
                      k3.data_ptr<scalar_t>(), rest.data_ptr<scalar_t>(), cosine_angles);
    }
    for (int64_t m = 0; m < dihedrals_.indices.size(0); ++m) {
      dihedral<scalar_t>(out, dihedrals_.indices.data_ptr<int64_t>() + 4 * m, row_of(dihedrals_, m, t, P),
                         ca.size(1), ca.data_ptr<scalar_t>(), sa.data_ptr<scalar_t>(),
                         c0.data_ptr<scalar_t>());
    }
  });
  return {energy, gradient};
}

Result bonded_priors_forward_meta(
    const at::Tensor& positions, const at::Tensor& graph_index, const c10::optional<at::Tensor>& box,
    int64_t num_graphs, const at::Tensor&, int64_t, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, bool, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&) {
  gnnmd_geometry::check_frame("bonded_priors", positions, graph_index, box);
  return {at::empty({num_graphs}, positions.options()), at::empty_like(positions)};
}

class BondedPriors : public torch::autograd::Function<BondedPriors> {
 public:
  template <typename... Rest>
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& positions,
                            const at::Tensor& graph_index, const Rest&... rest) {
    gnnmd_geometry::require_no_box_gradient("bonded_priors", std::get<0>(std::tie(rest...)));
    at::AutoDispatchBelowADInplaceOrView guard;
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("gnnmd::bonded_priors_forward", "")
                         .typed<decltype(bonded_priors_forward_cpu)>();
    auto [energy, gradient] = op.call(positions, graph_index, rest...);
    ctx->save_for_backward({graph_index, gradient});
    return energy;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    torch::autograd::variable_list out(20);
    out[0] = gnnmd_geometry::scaled_gradient("bonded_priors", grads[0], saved[0], saved[1]);
    return out;
  }
};

#define GNNMD_BONDED_ARGUMENTS                                                                      \
  "Tensor positions, Tensor graph_index, Tensor? box, int num_graphs, Tensor bead_prior_types, "   \
  "int num_prior_types, Tensor bond_terms, Tensor bond_keys, Tensor bond_k, Tensor bond_r0, "      \
  "Tensor angle_terms, Tensor angle_keys, Tensor angle_k, Tensor angle_rest, bool cosine_angles, " \
  "Tensor dihedral_terms, Tensor dihedral_keys, Tensor dihedral_cos, Tensor dihedral_sin, "        \
  "Tensor dihedral_constant"

}  // namespace

TORCH_LIBRARY_FRAGMENT(gnnmd, m) {
  m.def("bonded_priors(" GNNMD_BONDED_ARGUMENTS ") -> Tensor");
  m.def("bonded_priors_forward(" GNNMD_BONDED_ARGUMENTS ") -> (Tensor, Tensor)");
}

using Signature = decltype(bonded_priors_forward_cpu);

TORCH_LIBRARY_IMPL(gnnmd, CPU, m) {
  m.impl("bonded_priors", &gnnmd_geometry::EnergiesOnly<Signature>::call<bonded_priors_forward_cpu>);
  m.impl("bonded_priors_forward", &bonded_priors_forward_cpu);
}

TORCH_LIBRARY_IMPL(gnnmd, Meta, m) {
  m.impl("bonded_priors", &gnnmd_geometry::EnergiesOnly<Signature>::call<bonded_priors_forward_meta>);
  m.impl("bonded_priors_forward", &bonded_priors_forward_meta);
}

TORCH_LIBRARY_IMPL(gnnmd, Autograd, m) {
  m.impl("bonded_priors", &gnnmd_geometry::Autograd<BondedPriors, Signature>::call);
}
