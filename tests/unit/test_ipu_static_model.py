"""The static-shape model against the dynamic one; padding, overflow, the IPU runner, PopTorch's absence."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np
import pytest
import torch

from gnnmd.cli import main
from gnnmd.engine.forces import ForceProvider
from gnnmd.errors import GnnmdError
from gnnmd.ipu.onnx_export import _Energies
from gnnmd.ipu.poptorch_backend import (
    POPTORCH_MISSING,
    IPUForces,
    IPUUnavailableError,
    require_poptorch,
)
from gnnmd.neighbors import within_cutoff
from gnnmd.sim import LangevinSettings, ReplicaRunner
from gnnmd.static.model import NeighborCapacityError, StaticEvaluator, build_static
from gnnmd.static.packing import PackCapacity, pack_graphs
from tests.conftest import perturbed

HAVE_POPTORCH = importlib.util.find_spec("poptorch") is not None


def mixed(chignolin, villin, order: str = "cvccv"):
    """Topologies and native positions (N, 3) nm of a mix such as chignolin, villin, chignolin, ..."""
    systems = [chignolin if letter == "c" else villin for letter in order]
    return [s.topology for s in systems], np.concatenate([s.positions_nm for s in systems])


def evaluate(model, topologies, x, **kwargs):
    static, layout = build_static(model, topologies, x, **kwargs)
    energies, forces = StaticEvaluator(layout, static, static.max_edges, model.cutoff_nm)(x)
    return energies, forces, static, layout


@pytest.mark.parametrize("seed", [0, 1])
def test_static_equals_dynamic_on_mixed_systems(small_model, chignolin, villin, one_thread, seed):
    topologies, native = mixed(chignolin, villin)
    x = perturbed(native, scale_nm=0.05, seed=seed)
    energies, forces, static, layout = evaluate(small_model, topologies, x, target_nodes=240)
    assert layout.num_packs >= 2 and max(len(m) for m in layout.plan.packs) >= 2  # several graphs per pack
    expected_energies, expected_forces = small_model.energy_and_forces(x, small_model.pack(topologies))
    torch.testing.assert_close(energies, expected_energies, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(forces, expected_forces, rtol=1e-10, atol=1e-9)


def test_padding_contributes_exactly_nothing(small_model, chignolin, villin, one_thread):
    topologies, native = mixed(chignolin, villin, "cvc")
    x = perturbed(native, scale_nm=0.05, seed=3)
    tight_e, tight_f, _, tight = evaluate(small_model, topologies, x, target_nodes=180)
    # One pack with 2 empty graph slots, 600 padding nodes and twice the pair capacity.
    nodes = [t.n_beads for t in topologies]
    loose_plan = pack_graphs(nodes, [20_000] * 3, PackCapacity(sum(nodes) + 600, 60_000, 5))
    loose_e, loose_f, static, loose = evaluate(small_model, topologies, x, plan=loose_plan)
    assert loose.batch.node_mask.numel() - sum(nodes) > tight.batch.node_mask.numel() - sum(nodes)
    assert torch.equal(loose_e, tight_e) and torch.equal(loose_f, tight_f)
    energies, forces, counts = static(loose.scatter_positions(x))
    assert bool((forces[~loose.batch.node_mask] == 0).all())  # padding rows
    assert energies.shape == (1, 3) and int(counts[0]) < static.max_edges


def test_overflow_is_counted_in_the_step_and_reported_by_the_host(small_model, chignolin):
    topologies = [chignolin.topology] * 2
    x = perturbed(np.concatenate([chignolin.positions_nm] * 2), seed=4)
    batch = small_model.pack(topologies)
    inside = within_cutoff(x, batch.pairs, batch.graph_index, small_model.cutoff_nm)[0].shape[1]
    plan = pack_graphs([49, 49], [1, 1], PackCapacity(128, 100, 4))  # room for 100 pairs
    static, layout = build_static(small_model, topologies, x, plan=plan)
    _, _, counts = static(layout.scatter_positions(x))  # no exception inside the step: a tensor
    assert counts.tolist() == [inside]
    evaluator = StaticEvaluator(layout, static, static.max_edges, small_model.cutoff_nm)
    with pytest.raises(NeighborCapacityError, match=f"pack 0 has {inside} pairs .* room for 100"):
        evaluator(x)


def test_energy_path_has_static_shapes(small_model, chignolin, villin):
    """torch.export traces with symbolic data: a host read or a data-dependent shape would fail here."""
    topologies, native = mixed(chignolin, villin, "cv")
    x = torch.as_tensor(native)
    static, layout = build_static(small_model, topologies, x, target_nodes=240)
    program = torch.export.export(_Energies(static), (layout.scatter_positions(x),), strict=False)
    targets = {str(node.target) for node in program.graph.nodes}
    assert not any("nonzero" in t or "item" in t or "_local_scalar_dense" in t for t in targets)


def test_load_swaps_a_layout_of_the_same_shapes(small_model, chignolin, villin):
    forward, native = mixed(chignolin, villin, "cv")
    backward, native_back = mixed(chignolin, villin, "vc")
    plan = pack_graphs([49, 173], [3000, 3000], PackCapacity(240, 16_000, 2))
    static, _ = build_static(small_model, forward, native, plan=plan)
    other, other_layout = build_static(small_model, backward, native_back, plan=plan)
    static.load(other_layout.batch)
    packed = other_layout.scatter_positions(torch.as_tensor(native_back))
    assert torch.equal(static(packed)[0], other(packed)[0])
    _, small = build_static(small_model, forward[:1], native[:49], plan=pack_graphs([49], [1], plan.capacity))
    with pytest.raises(ValueError, match="shape"):
        static.load(small.batch)


def test_ipu_runner_on_the_host_follows_the_replica_runner(small_model, chignolin, villin, one_thread):
    topologies, native = mixed(chignolin, villin, "cvc")
    common = {"settings": LangevinSettings(timestep_fs=2.0), "dtype": torch.float64, "seed": 5}
    reference = ReplicaRunner(small_model, topologies, native, **common)
    forces = IPUForces(executor="host", target_nodes=180)
    runner = ReplicaRunner(small_model, topologies, native, forces=forces, **common)
    assert runner.skin_nm == 0.0 and isinstance(runner.provider, ForceProvider)
    reference.step(3)
    runner.step(3)
    torch.testing.assert_close(runner.positions, reference.positions, rtol=0, atol=1e-12)
    # An overflow is never truncated: the replicas are packed again and the step redone.
    runner.provider._evaluate.module.max_edges = runner.provider._evaluate.capacity = 50
    with pytest.warns(UserWarning, match="neighbour capacity overflow"):
        runner.step(1)
    reference.step(1)
    assert runner.provider.replans == 1
    # Dropping a replica packs the others anew, in a new provider; the trajectories go on unchanged.
    runner.drop([1])
    reference.drop([1])
    runner.step(2)
    reference.step(2)
    assert runner.provider.replans == 0 and runner.provider.layout.plan.summary()["packs"] >= 1
    torch.testing.assert_close(runner.positions, reference.positions, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="not a force provider"):
        ReplicaRunner(small_model, topologies, native, forces=forces, cuda_graph=True, **common)
    torch.testing.assert_close(runner.forces, reference.forces, rtol=1e-10, atol=1e-9)


@pytest.mark.skipif(HAVE_POPTORCH, reason="PopTorch is installed here")
def test_missing_poptorch_is_a_clear_error():
    with pytest.raises(IPUUnavailableError, match="Poplar SDK") as raised:
        require_poptorch()
    assert isinstance(raised.value, GnnmdError) and "pip install <sdk>/poptorch" in str(raised.value)
    with pytest.raises(IPUUnavailableError):
        IPUForces(executor="ipu")


@pytest.mark.skipif(HAVE_POPTORCH, reason="PopTorch is installed here")
@pytest.mark.parametrize("command", [
    ["bench", "--device", "ipu", "--replicas", "2", "--steps", "1"],
    ["simulate", "chignolin", "--device", "ipu", "--steps", "1", "-o", "unused"],
])  # fmt: skip
def test_cli_device_ipu_without_poptorch_says_what_is_missing(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    error = capsys.readouterr().err
    assert f"gnnmd {command[0]}: error: {POPTORCH_MISSING}" in error
    assert not (tmp_path / "unused").exists()


def test_bench_device_ipu_through_a_stand_in_poptorch(tmp_path, monkeypatch, capsys, one_thread):
    """The wiring: Options, inferenceModel and detachFromDevice as PopTorch documents them (no IPU here)."""
    calls = []

    class Options:
        def __getattr__(self, name):
            return lambda *args: calls.append((name, args))

    class Executor:
        def __init__(self, model, options):
            self.model = model
            calls.append(("inferenceModel", type(model).__name__, type(options).__name__))

        def __call__(self, positions):
            assert positions.dtype == torch.float32
            return self.model(positions)

        def detachFromDevice(self):  # noqa: N802 - PopTorch's name
            calls.append(("detachFromDevice",))

    stand_in = types.SimpleNamespace(Options=Options, inferenceModel=Executor)
    monkeypatch.setitem(sys.modules, "poptorch", stand_in)
    out = tmp_path / "bench.json"
    args = ["bench", "--device", "ipu", "--replicas", "2", "--steps", "2", "--warmup", "1",
            "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    row = json.loads(out.read_text())["benchmarks"][0]
    assert row["device"] == "ipu" and row["packing"]["max_nodes"] == 104  # 98 beads, a multiple of 8
    assert ("inferenceModel", "StaticPotential", "Options") in calls and ("detachFromDevice",) in calls
    assert ("deviceIterations", (1,)) in calls and "IPU" in capsys.readouterr().out
