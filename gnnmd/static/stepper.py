"""The whole BAOAB step with static shapes, captured in CUDA graphs.

A step is two graphs with one host decision between them::

    graph 1   B A O A on the static state, then each replica's Verlet staleness
    host      if a replica is stale: rebuild its list, copy it into the pair buffer
              (grown, and both graphs re-captured, if it no longer fits)
    graph 2   forces on the padded pair buffer (model + autograd), closing B, step += 1

The step counter lives on the device, so the counter-based thermostat noise is
replayed correctly. The host decision costs one small device-to-host copy per
step; in exchange the neighbour list is exactly as fresh as the eager runner's.

Capture follows the documented ``torch.cuda.graph`` recipe: the first steps
run eagerly on a side stream as warm-up, then both halves are captured into
graphs sharing one memory pool. With ``capture=False`` the same static-shape
code runs eagerly on any device, which is how it is tested without a GPU.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch import Tensor

from gnnmd.static.pair_buffer import PairBuffer, masked_within_cutoff

#: Eager steps before capture (the torch.cuda.graph recipe's warm-up).
WARMUP_STEPS = 3


class SteppedRunner(Protocol):
    """What the stepper reads of a runner (:class:`gnnmd.sim.runner.ReplicaRunner` has it).

    The state tensors are handed over: after :meth:`StaticStepper.step` the runner's
    ``positions``, ``velocities``, ``forces`` and ``energies`` *are* the static buffers,
    updated in place by every replay.
    """

    device: torch.device
    num_replicas: int
    steps_done: int
    positions: Tensor
    velocities: Tensor
    forces: Tensor
    energies: Tensor
    verlet: Any  # gnnmd.neighbors.verlet.VerletList
    integrator: Any  # gnnmd.sim.integrators.BAOAB
    model: Any  # gnnmd.nn.potential.CGPotential
    batch: Any  # gnnmd.graph.GraphBatch


class StaticStepper:
    """Steps a runner (:class:`SteppedRunner`) through static buffers.

    Args:
        runner: the runner (needs a Verlet skin > 0).
        capture: record CUDA graphs (CUDA only); False runs the same code eagerly.
    """

    def __init__(self, runner: SteppedRunner, capture: bool) -> None:
        if runner.verlet is None:
            raise ValueError("the static-shape step needs a Verlet list: use skin_nm > 0")
        if capture and runner.device.type != "cuda":
            raise ValueError(f"CUDA graph capture needs a CUDA device; the runner is on {runner.device}")
        self.runner = runner
        self.capture = capture
        self.graphs: tuple[torch.cuda.CUDAGraph, torch.cuda.CUDAGraph] | None = None
        self.eager_steps = 0
        self.captures = 0
        self._bind_state()
        runner.verlet.update(self.x)
        self.buffer = PairBuffer(PairBuffer.capacity_for(runner.verlet.pairs.shape[1]), runner.device)
        self.buffer.fill(runner.verlet.pairs)

    def _bind_state(self) -> None:
        r = self.runner
        self.x, self.v, self.f, self.e = (
            t.detach().clone() for t in (r.positions, r.velocities, r.forces, r.energies)
        )
        self.step_counter = torch.tensor(r.steps_done, dtype=torch.int64, device=r.device)
        self.stale = torch.zeros(r.num_replicas, dtype=torch.bool, device=r.device)
        self._publish()

    def _publish(self) -> None:
        r = self.runner
        r.positions, r.velocities, r.forces, r.energies = self.x, self.v, self.f, self.e

    def _drift(self) -> None:
        r = self.runner
        x, v = r.integrator.drift(self.x, self.v, self.f, self.step_counter)
        self.x.copy_(x)
        self.v.copy_(v)
        self.stale.copy_(r.verlet.stale_graphs(self.x))

    def _forces(self) -> None:
        r = self.runner
        with torch.enable_grad():
            x = self.x.detach().requires_grad_(True)
            pairs, distances = masked_within_cutoff(
                x, self.buffer.pairs, self.buffer.valid, r.batch.graph_index, r.model.cutoff_nm
            )
            energy = r.model.energy_from_pairs(x, r.batch, pairs, distances)
            (gradient,) = torch.autograd.grad([energy.sum()], [x])
        self.f.copy_(-gradient)
        self.e.copy_(energy.detach())
        self.v.copy_(r.integrator.kick(self.v, self.f))
        self.step_counter += 1

    def _refresh_neighbors(self) -> None:
        """Rebuild stale lists (host side); grow the buffer and drop stale graphs if it overflows."""
        r = self.runner
        if not bool(self.stale.any()):
            return
        r.verlet.rebuild(self.x, self.stale.clone())
        if not self.buffer.fill(r.verlet.pairs):
            self.buffer = PairBuffer(PairBuffer.capacity_for(r.verlet.pairs.shape[1]), r.device)
            self.buffer.fill(r.verlet.pairs)
            self.graphs = None  # the captured kernels read the old buffer

    def _run(self, drift: Callable[[], None], forces: Callable[[], None]) -> None:
        drift()
        self._refresh_neighbors()
        forces()

    def _capture(self) -> None:
        first, second = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.cuda.graph(first):
            self._drift()
        with torch.cuda.graph(second, pool=first.pool()):
            self._forces()
        self.graphs = (first, second)
        self.captures += 1

    def step(self, steps: int) -> None:
        """Advance ``steps`` steps; the runner's state tensors are the static buffers."""
        r = self.runner
        if r.positions is not self.x or r.steps_done != int(self.step_counter):
            self._bind_state()  # the caller replaced the state (e.g. load_state)
        for _ in range(steps):
            if not self.capture:
                self._run(self._drift, self._forces)
            elif self.graphs is None and self.eager_steps < WARMUP_STEPS:
                self._warmup_step()
            else:
                if self.graphs is None:
                    self._capture()
                self._replay()
            r.steps_done += 1

    def _warmup_step(self) -> None:
        side = torch.cuda.Stream(self.runner.device)
        side.wait_stream(torch.cuda.current_stream(self.runner.device))
        with torch.cuda.stream(side):
            self._run(self._drift, self._forces)
        torch.cuda.current_stream(self.runner.device).wait_stream(side)
        self.eager_steps += 1

    def _replay(self) -> None:
        first, second = self.graphs
        first.replay()
        self._refresh_neighbors()
        if self.graphs is None:  # the buffer grew: capture again and finish this step with it
            self._capture()
            second = self.graphs[1]
        second.replay()
