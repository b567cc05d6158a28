"""Kernels read a network's filters as plain records; the record's function is the network's filter."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import Tensor

from gnnmd.kernels.filter_function import FilterFunction
from gnnmd.kernels.filter_spec import ACTIVATIONS, FilterRecord
from gnnmd.nn.schnet import SchNet

CONFIGS = {
    "gaussian": {},
    "expnormal": {"rbf": "expnormal"},
    "enveloped expnormal, lower cutoff": {"rbf": "expnormal", "rbf_envelope": True, "lower_cutoff_nm": 0.1},
    "enveloped gaussian": {"rbf_envelope": True},
    "neighbour embedding": {"neighbor_embedding": True},
    **{f"activation {name}": {"act": name} for name in ACTIVATIONS},
}


def network(**options) -> SchNet:
    torch.manual_seed(0)
    return SchNet(5, hidden_channels=8, num_filters=8, num_interactions=2, num_rbf=12, cutoff_nm=1.2,
                  **options).double()  # fmt: skip


def network_filters(net: SchNet, module, r: Tensor) -> Tensor:
    return module.filter_net(net.basis(r)) * net.envelope(r)[:, None]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_record_function_equals_the_network_filter(name):
    net = network(**CONFIGS[name])
    r = torch.linspace(0.0, 1.3, 301, dtype=torch.float64)
    records = net.filter_records()
    assert len(records) == len(net.convolutions())
    for module, record in zip(net.convolutions(), records, strict=True):
        expected = network_filters(net, module, r)
        torch.testing.assert_close(FilterFunction(record).double()(r), expected, rtol=0, atol=1e-14)


def test_a_record_holds_plain_values_only():
    record = network(rbf_envelope=True).filter_records()[0]
    for field in dataclasses.fields(FilterRecord):
        value = getattr(record, field.name)
        leaves = [t for layer in value for t in layer] if field.name == "layers" else [value]
        for leaf in leaves:
            assert leaf is None or isinstance(leaf, (Tensor, float, str, tuple)), (field.name, type(leaf))
    assert record.basis_envelope == (1.2, 0.0) and record.activation == "tanh" and len(record.layers) == 2


def test_a_record_is_a_copy():
    net = network()
    record = net.filter_records()[0]
    with torch.no_grad():
        net.interactions[0].filter_net[0].weight.add_(1.0)
    assert not torch.equal(record.layers[0][0], net.interactions[0].filter_net[0].weight)


def test_kernels_do_not_reach_into_the_network_modules():
    """The kernel package reads filters through records: no network attribute names in its sources."""
    sources = Path(__file__).parents[2] / "gnnmd" / "kernels"
    for path in sources.glob("*.py"):
        text = path.read_text()
        names = (".filter_net", "network.basis", "network.envelope", "GaussianBasis", "ExpNormalBasis")
        for attribute in names:
            assert attribute not in text, f"{path.name} uses {attribute}"
