"""Write an OpenMM XML set-up of a gnnmd CG system (step 1 of 2; step 2 is the set-up's own run.py).

    python examples/openmm_xml/write_setup.py [--system chignolin] [--out out/openmm_xml]

The same as ``gnnmd openmm-xml chignolin --model default -o out/openmm_xml``:
system.xml (particles with bead masses, a TorchForce with the model embedded),
integrator.xml (Langevin, 4 fs, 300 K, 1/ps), state.xml (native positions,
velocities at 300 K), cg.pdb and gnnmd-setup.json (provenance). Copy the folder
anywhere that has torch, openmm and openmmtorch; gnnmd is not needed there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gnnmd.cli import main as gnnmd_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--system", default="chignolin", help="shipped system or PDB path (default: chignolin)"
    )
    parser.add_argument("--model", default="default", help="shipped model or checkpoint (default: default)")
    parser.add_argument("--replicas", type=int, default=1, help="copies in one TorchForce (default: 1)")
    parser.add_argument("--out", type=Path, default=Path("out/openmm_xml"), help="output folder")
    args = parser.parse_args(argv)
    return gnnmd_main(
        [
            "openmm-xml",
            args.system,
            "--model",
            args.model,
            "--replicas",
            str(args.replicas),
            "-o",
            str(args.out),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
