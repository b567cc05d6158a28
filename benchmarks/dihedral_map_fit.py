"""How well does force matching pin alanine dipeptide's φ/ψ free energy on this data? A linear test.

    python benchmarks/dihedral_map_fit.py [DATA] [--model ala2] [--order 4] [--held-out 8]

The model's priors alone give a φ/ψ distribution p₀ (simulated here, the validation protocol:
256 replicas × 40 ps). Add a correction C(φ, ψ) = Σ c_k b_k(φ, ψ) on a 2-D Fourier basis
(|m|, |n| ≤ order). Because C depends on φ and ψ only, the corrected model's φ/ψ distribution is
p₀ e^{-C/kT} exactly (reweighting, no further simulation). Force matching fixes c by linear
least squares: the mapped forces minus the prior forces, R, against -∇C = -Σ c_k (∂b_k/∂φ ∇φ +
∂b_k/∂ψ ∇ψ); per frame only the 2 × 2 metric of (∇φ, ∇ψ) and R's projection on them enter.

Two fits: "cartesian" matches the Cartesian forces as training does (the residual's projection on
∇φ, ∇ψ, which are not orthogonal to the bonds' and angles' gradients, so errors of the stiff
priors leak into C); "generalized" matches the generalized forces along φ and ψ alone: for each
dihedral, the rotation of the beads on one side of its axis changes that dihedral at unit rate and no
bond, angle or other dihedral (gnnmd.torsions.dihedral_forces), so bonds and angles cannot leak in.
Fitted on the training trajectories, the held-out trajectories' force error is reported (gain in
standard errors), and each corrected distribution against the reference: JS divergence
and the α_R / β / α_L populations, beside the priors alone and beside the best any φ/ψ
correction can do (the priors' samples reweighted to the reference histogram). If a fit lands
near the reference, the data carry the free energy; where the Cartesian fit does not and the
generalized one does, force matching's loss, not the data, is what misleads. Units: nm, kJ/mol, rad.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import torch

from gnnmd.analysis.distributions import jensen_shannon
from gnnmd.analysis.states import state_masks
from gnnmd.analysis.validate import ValidationSettings, simulate
from gnnmd.data.dataset import ForceDataset, spread_indices
from gnnmd.models import load_model
from gnnmd.nn.backends import use_backend
from gnnmd.nn.potential import priors_only
from gnnmd.nn.priors.geometry import bond_angles, bond_lengths, dihedral_angles, frame_values
from gnnmd.torsions import dihedral_forces
from gnnmd.units import kt_kj_per_mol

PHI, PSI = (0, 1, 2, 3), (1, 2, 3, 4)
BINS = 24  # ValidationSettings.bins_2d
PERIODIC = [(-math.pi, math.pi)] * 2


def dihedral(x: torch.Tensor, beads: tuple[int, ...]) -> torch.Tensor:
    """(F,) rad of frames (F, 5, 3) (gnnmd's IUPAC torsion, as the validation measures φ and ψ)."""
    return frame_values(x, torch.tensor([beads]), dihedral_angles)[:, 0]


BONDS = ((0, 1), (1, 2), (2, 3), (3, 4))
ANGLES = ((0, 1, 2), (1, 2, 3), (2, 3, 4))
#: Powers of the standardised bond lengths and angles in the joint fit's stiff corrections.
STIFF_POWERS = (1, 2, 3)


def stiff_coordinates(x: torch.Tensor) -> list[torch.Tensor]:
    """The 4 bond lengths (nm) and 3 angles (rad), each (F,), of frames (F, 5, 3)."""
    bonds = frame_values(x, torch.tensor(BONDS), bond_lengths)
    angles = frame_values(x, torch.tensor(ANGLES), bond_angles)
    return [*bonds.unbind(1), *angles.unbind(1)]


def frequencies(order: int, separable: bool = False) -> np.ndarray:
    """(K/2, 2) integer (m, n), one of each ± pair, (0, 0) left out (a constant has no force);
    ``separable``: only m = 0 or n = 0, a sum of a function of φ and one of ψ (the form of
    the dihedral priors: a Fourier series per dihedral)."""
    pairs = [(m, n) for m in range(-order, order + 1) for n in range(-order, order + 1)]
    chosen = [(m, n) for m, n in pairs if m > 0 or (m == 0 and n > 0)]
    return np.array([(m, n) for m, n in chosen if not separable or m == 0 or n == 0])


def basis(angles: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values (F, K) of cos(mφ + nψ), sin(mφ + nψ) and their (φ, ψ) derivatives (F, K, 2)."""
    phase = angles @ freq.T  # (F, K/2)
    cos, sin = np.cos(phase), np.sin(phase)
    values = np.concatenate([cos, sin], axis=1)
    slope = np.concatenate([-sin, cos], axis=1)  # d/d(phase)
    derivatives = slope[:, :, None] * np.concatenate([freq, freq])[None].astype(np.float64)
    return values, derivatives


def projections(model, topology, x: np.ndarray, f: np.ndarray, chunk: int = 20000) -> dict[str, np.ndarray]:
    """Per frame: (φ, ψ) (F, 2); the metric G = JᵀJ (F, 2, 2) of J = (∇φ, ∇ψ), Jᵀ R (F, 2) with
    R = mapped − prior forces, and |R|² (F,); the generalized residual forces along φ and ψ (F, 2)."""
    names = ("angles", "metric", "projected", "squared", "generalized", "coordinates", "joint_metric",
             "joint_projected")
    parts: dict[str, list] = {name: [] for name in names}
    for start in range(0, len(x), chunk):
        xb = torch.as_tensor(x[start:start + chunk], dtype=torch.float64).requires_grad_(True)
        batch = model.pack([topology] * len(xb))
        energy = model(xb.reshape(-1, 3), batch).sum()
        residual = torch.as_tensor(f[start:start + chunk]) + torch.autograd.grad(energy, xb)[0]
        grads, values = [], []
        for beads in (PHI, PSI):
            angle = dihedral(xb, beads)
            grads.append(torch.autograd.grad(angle.sum(), xb)[0].reshape(len(xb), -1))
            values.append(angle.detach())
        jacobian = torch.stack(grads, dim=2)  # (F, 15, 2)
        flat = residual.reshape(len(xb), -1)
        stiff = stiff_coordinates(xb)
        stiff_grads = [
            torch.autograd.grad(q.sum(), xb, retain_graph=True)[0].reshape(len(xb), -1) for q in stiff
        ]
        joint = torch.cat([jacobian, torch.stack(stiff_grads, dim=2)], dim=2)  # (F, 15, 9)
        parts["coordinates"].append(torch.stack([*values, *(q.detach() for q in stiff)], dim=1).numpy())
        parts["joint_metric"].append((joint.transpose(1, 2) @ joint).numpy())
        parts["joint_projected"].append(torch.einsum("fck,fc->fk", joint, flat).numpy())
        parts["angles"].append(torch.stack(values, dim=1).numpy())
        parts["metric"].append((jacobian.transpose(1, 2) @ jacobian).numpy())
        parts["projected"].append(torch.einsum("fck,fc->fk", jacobian, flat).numpy())
        parts["squared"].append(flat.pow(2).sum(1).detach().numpy())
        parts["generalized"].append(dihedral_forces(xb, residual.detach(), topology, [PHI, PSI]).numpy())
    return {name: np.concatenate(values) for name, values in parts.items()}


def solve(normal: np.ndarray, right: np.ndarray, ridge: float) -> np.ndarray:
    return np.linalg.solve(normal + ridge * np.trace(normal) / len(normal) * np.eye(len(normal)), right)


def fit_cartesian(angles, metric, projected, freq, ridge: float) -> np.ndarray:
    """c minimising Σ |R + J D c|² (D: the basis' (φ, ψ) derivatives): Σ DᵀGD c = -Σ Dᵀ JᵀR."""
    _, d = basis(angles, freq)
    normal = np.einsum("fka,fab,flb->kl", d, metric, d, optimize=True)
    return solve(normal, -np.einsum("fka,fa->k", d, projected), ridge)


def fit_generalized(angles, generalized, freq, ridge: float) -> np.ndarray:
    """c minimising Σ_θ∈{φ,ψ} (g_θ + ∂C/∂θ)², g_θ the generalized residual force along θ."""
    _, d = basis(angles, freq)
    normal = np.einsum("fka,fla->kl", d, d)
    return solve(normal, -np.einsum("fka,fa->k", d, generalized), ridge)


def joint_basis(coordinates: np.ndarray, freq: np.ndarray, centre: np.ndarray, scale: np.ndarray):
    """Values (F, K) and derivatives (F, K, 9) in (φ, ψ, 4 bonds, 3 angles) of the Fourier basis in
    (φ, ψ) followed by powers of each standardised bond length and angle."""
    values, derivatives = basis(coordinates[:, :2], freq)
    frames = len(coordinates)
    extra_values, extra_derivatives = [], []
    for q in range(2, coordinates.shape[1]):
        z = (coordinates[:, q] - centre[q]) / scale[q]
        for power in STIFF_POWERS:
            extra_values.append(z**power)
            slope = np.zeros((frames, coordinates.shape[1]))
            slope[:, q] = power * z ** (power - 1) / scale[q]
            extra_derivatives.append(slope)
    zeros = np.zeros((*derivatives.shape[:2], coordinates.shape[1] - 2))
    padded = np.concatenate([derivatives, zeros], axis=2)
    return (np.concatenate([values, np.stack(extra_values, axis=1)], axis=1),
            np.concatenate([padded, np.stack(extra_derivatives, axis=1)], axis=1))  # fmt: skip


def fit_joint(coordinates, metric, projected, freq, centre, scale, ridge: float) -> np.ndarray:
    """The Cartesian fit with corrections of every bond and angle beside the φ/ψ map."""
    _, d = joint_basis(coordinates, freq, centre, scale)
    normal = np.einsum("fka,fab,flb->kl", d, metric, d, optimize=True)
    return solve(normal, -np.einsum("fka,fa->k", d, projected), ridge)


def force_error(step: np.ndarray, metric: np.ndarray, projected: np.ndarray, squared: np.ndarray):
    """Per frame |R + J step|², ``step`` (F, q) the correction's gradient in the q coordinates of J."""
    return squared + 2 * (step * projected).sum(1) + np.einsum("fa,fab,fb->f", step, metric, step)


def distribution(angles: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    counts, _, _ = np.histogram2d(angles[:, 0], angles[:, 1], bins=BINS, range=PERIODIC, weights=weights)
    return counts / counts.sum()


def populations(angles: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    w = np.ones(len(angles)) if weights is None else weights
    masks = state_masks("phi_psi", angles)
    return {state: float(w[mask].sum() / w.sum()) for state, mask in masks.items()}


def sampled_coordinates(priors, topology, x: np.ndarray, args) -> np.ndarray:
    """(S, 9) φ, ψ, bonds, angles of the priors alone (validation protocol), cached beside --json."""
    cache = f"{args.json}.priors_coordinates.npy" if args.json else None
    if cache and os.path.exists(cache):
        return np.load(cache)
    settings = ValidationSettings(replicas=args.replicas)
    frames, _, failed = simulate(priors.float(), topology, x[spread_indices(len(x), args.replicas)], settings)
    if failed:
        raise RuntimeError(f"the priors' run lost replicas: {failed}")
    positions = torch.as_tensor(frames, dtype=torch.float64)
    dihedrals = [dihedral(positions, PHI), dihedral(positions, PSI)]
    result = torch.stack([*dihedrals, *stiff_coordinates(positions)], dim=1).numpy()
    if cache:
        np.save(cache, result)
    return result


def reweighted(correction: np.ndarray, angles: np.ndarray, reference: np.ndarray, kt: float,
               gain: np.ndarray) -> dict:  # fmt: skip
    """The report of one fit: held-out force gain, and the priors' samples reweighted by e^{-C/kT}."""
    weights = np.exp(-(correction - correction.min()) / kt)
    return {
        "held_out_force_gain": {"mean_kj2_per_mol2_nm2": float(gain.mean()),
                                "standard_errors": float(gain.mean() / (gain.std() / math.sqrt(len(gain))))},
        "js": jensen_shannon(distribution(angles, weights), reference),
        "populations": populations(angles, weights),
        "effective_samples": float(weights.sum() ** 2 / (weights**2).sum()), "samples": len(weights),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="out/ala2-reference/ala2_reference.h5")
    parser.add_argument("--model", default="ala2", help="whose priors (default: the shipped ala2)")
    parser.add_argument("--order", type=int, default=4, help="largest Fourier frequency per angle (4)")
    parser.add_argument("--held-out", type=int, default=8, help="trajectories held out (8)")
    parser.add_argument(
        "--separable", action="store_true",
        help="a function of φ plus one of ψ (1-D Fourier series, the dihedral priors' form) instead of 2-D",
    )  # fmt: skip
    parser.add_argument("--ridge", type=float, default=1e-6)
    parser.add_argument("--replicas", type=int, default=256)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    dataset = ForceDataset(args.data, ["ala2"])
    topology = dataset.topologies[0]
    x, f = (a.astype(np.float64) for a in dataset.frames(0, np.arange(int(dataset.offsets[1]))))
    trajectories = np.asarray(dataset.trajectory_ids[0])
    names = np.unique(trajectories)
    held = np.isin(trajectories, names[spread_indices(len(names), args.held_out)])
    # The network's readout is zeroed: it adds nothing, and the tabulated kernels skip its cost.
    priors = use_backend(priors_only(load_model(args.model, dtype=torch.float64)), "tabulated")
    kt = kt_kj_per_mol(300.0)
    data = projections(priors, topology, x, f)
    angles, train = data["angles"], ~held
    freq = frequencies(args.order, args.separable)
    coordinates = data["coordinates"]
    centre, scale = coordinates[train].mean(0), coordinates[train].std(0)
    fits = {
        "cartesian": fit_cartesian(angles[train], data["metric"][train], data["projected"][train], freq,
                                   args.ridge),
        "generalized": fit_generalized(angles[train], data["generalized"][train], freq, args.ridge),
        "cartesian_with_stiff": fit_joint(coordinates[train], data["joint_metric"][train],
                                          data["joint_projected"][train], freq, centre, scale, args.ridge),
    }  # fmt: skip
    sampled = sampled_coordinates(priors, topology, x, args)
    prior_angles = sampled[:, :2]
    reference = distribution(angles)
    p0 = distribution(prior_angles)
    # The best φ/ψ-only correction: reweight the priors' samples to the reference histogram.
    cell = np.clip(((prior_angles + math.pi) / (2 * math.pi) * BINS).astype(int), 0, BINS - 1)
    ideal = np.where(p0 > 0, reference / np.maximum(p0, 1e-300), 0.0)[cell[:, 0], cell[:, 1]]
    report = {
        "frames": len(x), "trajectories": len(names), "held_out_trajectories": int(args.held_out),
        "basis_functions": 2 * len(freq), "separable": bool(args.separable),
        "priors_only": {"js": jensen_shannon(p0, reference), "populations": populations(prior_angles)},
        "priors_plus_ideal_map": {"js": jensen_shannon(distribution(prior_angles, ideal), reference),
                                  "populations": populations(prior_angles, ideal)},
        "reference": {"populations": populations(angles)},
    }  # fmt: skip
    h = held
    for name, c in fits.items():
        if name == "cartesian_with_stiff":
            values, d_held = joint_basis(sampled, freq, centre, scale)[0], joint_basis(coordinates[h], freq,
                                                                                       centre, scale)[1]
            metric, projected = data["joint_metric"][h], data["joint_projected"][h]
        else:
            values, d_held = basis(prior_angles, freq)[0], basis(angles[h], freq)[1]
            metric, projected = data["metric"][h], data["projected"][h]
        gain = data["squared"][h] - force_error(np.einsum("fka,k->fa", d_held, c), metric, projected,
                                                data["squared"][h])  # fmt: skip
        report[f"priors_plus_{name}_fit"] = reweighted(values @ c, prior_angles, reference, kt, gain)
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
