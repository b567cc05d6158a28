"""The CPU thread policy: a count as asked, or CPUs not kept busy by other work (auto)."""

from __future__ import annotations

import pytest
import torch

from gnnmd import threads


@pytest.mark.parametrize(("cpus", "load", "expected"), [(2, 0.1, 2), (2, 1.2, 1), (2, 3.0, 1), (16, 4.4, 12)])
def test_auto_leaves_the_busy_cpus_alone(monkeypatch, cpus, load, expected):
    monkeypatch.setattr(threads, "available_cpus", lambda: cpus)
    monkeypatch.setattr(threads, "busy_cpus", lambda: load)
    count, policy = threads.choose_threads("auto")
    assert count == expected and policy == f"auto: {cpus} CPU(s), 1-minute load {load:.2f}"


def test_explicit_counts_and_bad_values():
    assert threads.choose_threads("3") == (3, "requested")
    for bad, message in (("0", "at least 1"), ("many", "positive integer or 'auto'")):
        with pytest.raises(ValueError, match=message):
            threads.choose_threads(bad)


def test_apply_sets_torch_and_says_what_it_did():
    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(1) == {"threads": 1, "thread_policy": "requested"}
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
