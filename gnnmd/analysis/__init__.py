"""Analysis of CG trajectories: observables, distributions, divergences, and model validation."""
