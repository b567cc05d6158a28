"""Counter-based thermostat noise: exact integer hashing, Gaussian statistics, batch-independent keys."""

from __future__ import annotations

import numpy as np
import torch

from gnnmd.sim.noise import STREAM_THERMOSTAT, STREAM_VELOCITIES, CounterNoise, mix32


def lowbias32_reference(x: int) -> int:
    """Wellons' lowbias32 with explicit 32-bit wrap-around (the published definition)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_mix32_equals_the_wraparound_definition_for_ints_and_tensors():
    values = np.random.default_rng(0).integers(0, 2**32, 2000, dtype=np.uint64).tolist() + [0, 2**32 - 1]
    expected = [lowbias32_reference(v) for v in values]
    assert [mix32(v) for v in values] == expected
    assert mix32(torch.tensor(values, dtype=torch.int64)).tolist() == expected


def noise_for(replicas: list[int], beads: int, seed: int = 11, dtype=torch.float64) -> CounterNoise:
    replica_of_bead = torch.tensor(replicas).repeat_interleave(beads)
    bead_in_replica = torch.arange(beads).repeat(len(replicas))
    return CounterNoise(seed, replica_of_bead, bead_in_replica, dtype)


def test_normal_statistics():
    noise = noise_for(list(range(50)), 100)
    z = torch.cat([noise.normal(step).flatten() for step in range(20)])  # 300,000 numbers
    count = z.numel()
    # Standard errors of mean, variance and fourth moment of N(0,1) samples: 1/√n, √(2/n), √(96/n).
    assert abs(float(z.mean())) < 5 / count**0.5
    assert abs(float(z.var()) - 1) < 5 * (2 / count) ** 0.5
    assert abs(float((z**4).mean()) - 3) < 5 * (96 / count) ** 0.5
    # Consecutive steps and the two streams are uncorrelated.
    a, b = noise.normal(5).flatten(), noise.normal(6).flatten()
    c = noise.normal(5, STREAM_VELOCITIES).flatten()
    for other in (b, c):
        assert abs(float(torch.corrcoef(torch.stack([a, other]))[0, 1])) < 5 / a.numel() ** 0.5


def test_noise_depends_on_global_replica_index_not_on_the_batch():
    batch = noise_for([0, 1, 2, 3, 4], 7)
    alone = noise_for([3], 7)
    reordered = noise_for([4, 3], 7)
    for step in (0, 1, 2**33 + 5):  # a step beyond 32 bits uses the high word too
        full = batch.normal(step)
        assert torch.equal(alone.normal(step), full[21:28])
        assert torch.equal(reordered.normal(step)[7:], full[21:28])
    assert not torch.equal(batch.normal(2**33 + 5), batch.normal(5))
    # Another seed, another stream: different numbers.
    assert not torch.equal(noise_for([3], 7, seed=12).normal(1), alone.normal(1))
    assert not torch.equal(alone.normal(1, STREAM_VELOCITIES), alone.normal(1, STREAM_THERMOSTAT))


def test_step_may_be_a_device_tensor_for_graph_replay():
    noise = noise_for([0, 1], 5, dtype=torch.float32)
    assert torch.equal(noise.normal(torch.tensor(9)), noise.normal(9))
