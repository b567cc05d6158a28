"""``--backend auto``: the fastest accurate backend that runs here, said once, never a silent fallback."""

from __future__ import annotations

import pytest

from gnnmd import kernels
from gnnmd.kernels import choose_backend, ops


@pytest.fixture(autouse=True)
def fresh_messages(monkeypatch):
    monkeypatch.setattr(kernels, "_CHOICES_SAID", set())


def test_auto_is_tabulated_on_cpus_with_the_op_library_and_says_so_once(capsys):
    assert choose_backend("auto", "cpu") == "tabulated"
    assert choose_backend("auto", "cpu") == "tabulated"
    assert capsys.readouterr().err.count("--backend auto runs tabulated (the native CPU op library") == 1


def test_auto_is_reference_without_the_op_library_and_says_why(monkeypatch, capsys):
    def missing():
        raise ops.OpsUnavailableError("/x/libgnnmd_ops.so: the gnnmd op library is not built")

    monkeypatch.setattr(ops, "load", missing)
    assert choose_backend("auto", "cpu") == "reference"
    said = capsys.readouterr().err
    assert "auto runs reference (the tabulated backend's op library cannot load: /x/" in said


@pytest.mark.parametrize(("device", "torchscript"), [("ipu", False), ("cuda", True)])
def test_auto_is_reference_where_no_fast_kernel_runs(device, torchscript, capsys):
    assert choose_backend("auto", device, torchscript=torchscript) == "reference"
    assert "no fast kernel runs on" in capsys.readouterr().err


def test_named_backends_pass_through_and_unknown_ones_raise():
    assert choose_backend("fused", "cpu") == "fused"
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        choose_backend("fast", "cpu")


def test_create_simulation_defaults_to_auto(chignolin, capsys):
    """The OpenMM helper's default runs the tabulated kernel on CPUs, with the reference's energy."""
    from gnnmd.openmm import create_simulation

    energies = {}
    for backend in ("reference", "auto"):
        arguments = {} if backend == "auto" else {"backend": backend}
        simulation = create_simulation(chignolin, "chignolin", platform="CPU", **arguments)
        state = simulation.context.getState(getEnergy=True)
        energies[backend] = state.getPotentialEnergy()._value
    assert "--backend auto runs tabulated" in capsys.readouterr().err
    assert energies["auto"] == pytest.approx(energies["reference"], rel=1e-4)


def test_export_with_auto_records_the_backend_that_ran(tmp_path, capsys):
    """`gnnmd export --backend auto` writes a tabulated module (its metadata says so) on CPUs."""
    from gnnmd.cli import main
    from gnnmd.export import exported_metadata

    out = tmp_path / "chignolin.pt"
    assert main(["export", "chignolin", "--system", "chignolin", "--backend", "auto", "-o", str(out)]) == 0
    metadata = exported_metadata(out)
    assert (metadata["backend"], metadata["implementation"]) == ("tabulated", "native-cpu")
    assert "--backend auto runs tabulated" in capsys.readouterr().err
