"""Protein observables relative to a native structure, on CA beads: RMSD, fraction of native contacts Q.

Definitions (frames (F, n, 3) and native structure (n, 3) in nm):

- **RMSD to native**: CA-bead RMSD after optimal superposition (Kabsch), nm.
- **Fraction of native contacts** Q, the smooth form of Best, Hummer & Eaton,
  PNAS 110, 17874 (2013), on CA beads: native contacts are CA pairs at least
  :data:`MIN_SEPARATION` residues apart along the chain (or on different chains)
  whose native distance r₀ is below :data:`CONTACT_CUTOFF_NM`;
  Q = mean over contacts of 1 / (1 + exp(β (r − λ r₀))) with β = :data:`BETA_PER_NM`
  and λ = :data:`LAMBDA` (their value for coarse-grained models; 1.8 is for all-atom).
  At the native structure each contact contributes 1 / (1 + exp(−(λ − 1) β r₀)),
  slightly below 1.
- **Folded**: a frame whose CA RMSD to native is below :data:`FOLDED_RMSD_NM`.
"""

from __future__ import annotations

import numpy as np

from gnnmd.analysis.observables import Observable
from gnnmd.errors import SystemNotFoundError
from gnnmd.topology import MAPPINGS, CGTopology

MIN_SEPARATION = 3
CONTACT_CUTOFF_NM = 0.8
BETA_PER_NM = 50.0
LAMBDA = 1.5
FOLDED_RMSD_NM = 0.3
#: Fewest CA beads (one per residue) for which Q has contacts to count.
MIN_CA_RESIDUES = MIN_SEPARATION + 1


def ca_indices(topology: CGTopology) -> np.ndarray:
    """(m,) int64 indices of the CA beads, in chain order."""
    return np.flatnonzero(np.asarray(topology.bead_names) == "CA")


def kabsch_rmsd(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(F,) nm: RMSD of each frame (F, m, 3) nm to ``reference`` (m, 3) nm after optimal superposition
    (proper rotations only: a mirror image is not superposable). mdtraj computes it, in float32."""
    import mdtraj

    frames = np.asarray(frames, dtype=np.float64)
    topology = mdtraj.Topology()
    residue = topology.add_residue("BEAD", topology.add_chain())
    for _ in range(frames.shape[1]):
        topology.add_atom("CA", mdtraj.element.carbon, residue)
    target = mdtraj.Trajectory(frames, topology)
    native = mdtraj.Trajectory(np.asarray(reference, dtype=np.float64)[None], topology)
    return mdtraj.rmsd(target, native).astype(np.float64)


def native_contacts(native_ca: np.ndarray, chain_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Native contacts of CA positions (m, 3) nm: pairs (C, 2) and their native distances r₀ (C,) nm."""
    i, j = np.triu_indices(len(native_ca), k=1)
    separated = (j - i >= MIN_SEPARATION) | (chain_ids[i] != chain_ids[j])
    r0 = np.linalg.norm(native_ca[j] - native_ca[i], axis=1)
    keep = separated & (r0 < CONTACT_CUTOFF_NM)
    return np.stack([i[keep], j[keep]], axis=1), r0[keep]


def fraction_native_contacts(frames_ca: np.ndarray, pairs: np.ndarray, r0: np.ndarray) -> np.ndarray:
    """(F,) Q in [0, 1] of CA frames (F, m, 3) nm for native ``pairs`` (C, 2) at distances ``r0`` (C,) nm."""
    r = np.linalg.norm(frames_ca[:, pairs[:, 1]] - frames_ca[:, pairs[:, 0]], axis=2)
    # 1 / (1 + e^x) = (1 - tanh(x / 2)) / 2, which cannot overflow for far-apart beads.
    return (0.5 * (1.0 - np.tanh(0.5 * BETA_PER_NM * (r - LAMBDA * r0)))).mean(axis=1)


def folded_fraction(rmsd_nm: np.ndarray) -> float:
    """Fraction of frames whose CA RMSD to native (nm) is below :data:`FOLDED_RMSD_NM`."""
    return float(np.mean(np.asarray(rmsd_nm) < FOLDED_RMSD_NM))


def _ca_contacts(topology: CGTopology, native_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CA indices (m,), native contacts (C, 2) among them and r₀ (C,) nm; ValueError if Q is undefined."""
    ca = ca_indices(topology)
    if len(ca) < MIN_CA_RESIDUES:
        raise ValueError(f"{topology.name}: {len(ca)} CA beads; Q needs at least {MIN_CA_RESIDUES}")
    native = np.asarray(native_nm, dtype=np.float64)[ca]
    pairs, r0 = native_contacts(native, np.asarray(topology.chain_ids)[ca])
    if len(pairs) == 0:
        raise ValueError(f"{topology.name}: no native CA contacts below {CONTACT_CUTOFF_NM} nm")
    return ca, pairs, r0


def protein_observables(topology: CGTopology, frames: np.ndarray, native_nm: np.ndarray) -> list[Observable]:
    """Observables "rmsd_native" (nm), "native_contacts_q" and joint "rmsd_q" of frames (F, n, 3) nm.

    ``native_nm`` (n, 3) nm has the beads of ``topology``. None is periodic.

    Raises:
        ValueError: fewer than :data:`MIN_CA_RESIDUES` CA beads, or no native contact.
    """
    ca, pairs, r0 = _ca_contacts(topology, native_nm)
    frames_ca = np.asarray(frames, dtype=np.float64).reshape(-1, topology.n_beads, 3)[:, ca]
    rmsd = kabsch_rmsd(frames_ca, np.asarray(native_nm, dtype=np.float64)[ca])
    q = fraction_native_contacts(frames_ca, pairs, r0)
    return [
        Observable("rmsd_native", rmsd[:, None], False, "nm", ("RMSD (nm)",)),
        Observable("native_contacts_q", q[:, None], False, "1", ("Q",)),
        Observable("rmsd_q", np.stack([rmsd, q], axis=1), False, "nm, 1", ("RMSD (nm)", "Q")),
    ]


def shipped_native(topology: CGTopology) -> np.ndarray | None:
    """Native structure (n, 3) nm of the shipped system named ``topology.name``, or None.

    None also when the system's beads differ from the topology's (another mapping
    or residue range), or when Q is undefined for it (too few CA beads, no contacts).
    """
    from gnnmd.systems import load_system  # reads PDB files: only when asked

    mapping = topology.mapping if topology.mapping in MAPPINGS else None
    try:
        system = load_system(topology.name, mapping)
    except SystemNotFoundError:
        return None
    if tuple(system.topology.bead_types) != tuple(topology.bead_types):
        return None
    try:
        _ca_contacts(topology, system.positions_nm)
    except ValueError:
        return None
    return system.positions_nm
