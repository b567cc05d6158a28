"""Do a CG dataset's mapped forces carry its own dihedral free energy? The direct test of a force map.

    python benchmarks/mean_force_check.py [DATA] [--molecule ala2]

For a dihedral i-j-k-l, rotating the beads beyond the j-k axis about that axis changes the
dihedral at unit rate and nothing else (bond lengths and angles stay), and the rotation field is
divergence-free, so the mean force along the dihedral is dA/dψ = -<F · v | ψ> with v the rotation
field (gnnmd.torsions.dihedral_forces). Integrating the binned mean force gives A(ψ) from
the forces alone; -kT ln p(ψ) gives it from the same frames' histogram. Force matching can only
learn the first: where they differ, the mapped forces are biased (force map, constraints) and no
network trained on them reproduces the histogram. Prints the RMS difference in kT and the
population of the α_R range of ψ (-120° to 50°) or φ < 0 from each. Units: nm, kJ/mol, rad.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from gnnmd.data.dataset import ForceDataset
from gnnmd.nn.priors.geometry import dihedral_angles, frame_values
from gnnmd.topology import CGTopology
from gnnmd.torsions import dihedral_forces
from gnnmd.units import kt_kj_per_mol

BINS = 60
MIN_COUNT = 50


def free_energies(x: np.ndarray, f: np.ndarray, topology: CGTopology, beads: tuple[int, ...], kt: float):
    """(bin centres, A from the mean force, A from the histogram, counts) of one dihedral, kJ/mol."""
    angle = frame_values(torch.as_tensor(x), torch.tensor([beads]), dihedral_angles)[:, 0].numpy()
    generalized = dihedral_forces(torch.as_tensor(x), torch.as_tensor(f), topology, [beads])[:, 0].numpy()
    edges = np.linspace(-np.pi, np.pi, BINS + 1)
    index = np.clip(np.digitize(angle, edges) - 1, 0, BINS - 1)
    counts = np.bincount(index, minlength=BINS)
    sums = np.bincount(index, weights=generalized, minlength=BINS)
    mean = np.where(counts > MIN_COUNT, sums / np.maximum(counts, 1), np.nan)
    start, step = int(np.argmax(counts)), edges[1] - edges[0]
    from_force = np.full(BINS, np.nan)
    from_force[start] = 0.0
    for direction in (1, -1):  # integrate outwards from the most populated bin while sampled
        total, b = 0.0, start
        while True:
            nb = (b + direction) % BINS
            if nb == start or np.isnan(mean[b]) or np.isnan(mean[nb]):
                break
            total -= direction * 0.5 * (mean[b] + mean[nb]) * step
            from_force[nb], b = total, nb
    from_histogram = -kt * np.log(np.maximum(counts, 1) / counts.sum())
    return 0.5 * (edges[1:] + edges[:-1]), from_force, from_histogram - from_histogram[start], counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="out/ala2-reference/ala2_reference.h5")
    parser.add_argument("--molecule", default="ala2")
    parser.add_argument("--temperature-k", type=float, default=300.0)
    args = parser.parse_args()
    dataset = ForceDataset(args.data, [args.molecule])
    x, f = (a.astype(np.float64) for a in dataset.frames(0, np.arange(int(dataset.offsets[1]))))
    kt = kt_kj_per_mol(args.temperature_k)
    # ala2's five beads ACE.C, ALA.N, ALA.CA, ALA.C, NME.N: φ = 0-1-2-3, ψ = 1-2-3-4.
    for name, beads in (("phi", (0, 1, 2, 3)), ("psi", (1, 2, 3, 4))):
        centres, force, histogram, counts = free_energies(x, f, dataset.topologies[0], beads, kt)
        good = ~np.isnan(force) & (counts > 4 * MIN_COUNT)
        p_force = np.exp(-force[good] / kt)
        p_force /= p_force.sum()
        p_histogram = counts[good] / counts[good].sum()
        if name == "psi":
            state = (centres[good] > np.radians(-120)) & (centres[good] < np.radians(50))
        else:
            state = centres[good] < 0
        rms = np.sqrt(np.mean((force[good] - histogram[good]) ** 2)) / kt
        print(
            f"{name}: {len(x)} frames, A from mean force vs histogram: RMS {rms:.3f} kT over "
            f"{good.sum()} bins; "
            f"population of the {'alpha_R psi' if name == 'psi' else 'phi < 0'} range: "
            f"force {p_force[state].sum():.3f}, histogram {p_histogram[state].sum():.3f}"
        )


if __name__ == "__main__":
    main()
