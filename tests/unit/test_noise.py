"""Counter-based thermostat noise: Philox4x32-10 against Random123's known answers, the op against its
pure-torch twin bit for bit, Gaussian statistics, batch-independent keys."""

from __future__ import annotations

import pytest
import torch

from gnnmd.kernels import ops
from gnnmd.kernels.philox import choose_implementation, philox4x32_10, philox_bits, philox_bits_torch
from gnnmd.sim.noise import STREAM_THERMOSTAT, STREAM_VELOCITIES, CounterNoise

#: Random123's published known-answer vectors for Philox4x32-10 (tests/kat_vectors): counter, key, output.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]  # fmt: skip


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_gives_random123s_known_answers_for_ints_and_tensors(counter, key, expected):
    assert philox4x32_10(counter, *key) == expected
    words = philox4x32_10(tuple(torch.tensor([c, c]) for c in counter), *key)
    assert [w.tolist() for w in words] == [[e, e] for e in expected]


@pytest.mark.parametrize(("counter", "key", "expected"), [KNOWN_ANSWERS[0]])
def test_the_op_and_the_twin_give_the_known_answer(counter, key, expected):
    ops.load()
    lanes = torch.tensor([counter[2:]])
    step = counter[0] | counter[1] << 32
    assert torch.ops.gnnmd.philox_bits(lanes, torch.tensor(step), *key).tolist() == [list(expected[:2])]
    assert philox_bits_torch(lanes, step, *key).tolist() == [list(expected[:2])]


def test_the_op_equals_its_twin_bit_for_bit_and_passes_opcheck():
    ops.load()
    lanes = torch.randint(0, 2**32, (20_000, 2), generator=torch.Generator().manual_seed(3))
    for step in (0, 1, 977, 2**32 - 1, 2**32, 2**33 + 5, 2**62 + 3):  # both words of the step
        for key in ((0, 0), (123, 456), (2**32 - 1, 7)):
            native = philox_bits(lanes, step, *key, "native-cpu")
            assert torch.equal(native, philox_bits(lanes, torch.tensor(step), *key, "torch"))
            assert int(native.min()) >= 0 and int(native.max()) < 2**32
    torch.library.opcheck(torch.ops.gnnmd.philox_bits.default, (lanes[:64], torch.tensor(5), 1, 2))
    assert philox_bits(lanes[:0], 3, 1, 2, "native-cpu").shape == (0, 2)
    with pytest.raises(RuntimeError, match="key words must lie in"):
        torch.ops.gnnmd.philox_bits(lanes, torch.tensor(0), -1, 0)
    with pytest.raises(ValueError, match="unknown Philox implementation"):
        philox_bits(lanes, 0, 1, 2, "cuda-magic")


def test_noise_is_the_same_drawn_by_the_op_or_the_twin():
    ops.load()
    replicas = torch.tensor([0, 1, 5]).repeat_interleave(9)
    beads = torch.arange(9).repeat(3)
    native = CounterNoise(2**63 + 11, replicas, beads, torch.float32, "native-cpu")
    twin = CounterNoise(2**63 + 11, replicas, beads, torch.float32, "torch")
    for step, stream in ((0, STREAM_VELOCITIES), (0, STREAM_THERMOSTAT), (12345, STREAM_THERMOSTAT)):
        assert torch.equal(native.normal(step, stream), twin.normal(step, stream))
    assert CounterNoise(1, replicas, beads, torch.float32).implementation == "native-cpu"
    assert choose_implementation("cuda") == ("triton-cuda" if torch.cuda.is_available() else "torch")
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        CounterNoise(1, torch.tensor([2**32]), torch.tensor([0]), torch.float32)


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
