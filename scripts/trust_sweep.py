"""Bad inputs and faults thrown at the gnnmd command line, as a demanding user would: a table of outcomes.

python scripts/trust_sweep.py [--work DIR] [--markdown OUT.md]

Each case runs ``gnnmd`` in this process (``gnnmd.cli.main``) and is classed:

- ``clear error``: exit status 2 and one line on stderr naming the problem;
- ``ran``: exit 0 where the input is valid (e.g. an mmCIF file) and the outputs are checked;
- ``TRACEBACK``: an exception escaped the command line;
- ``SILENTLY WRONG``: exit 0 where the input was bad, or outputs that differ from the expected.

For each refusal the files already in the folder are hashed before and after:
``data lost`` is "no" when every one of them is unchanged. Needs root for the
full-disk case (a 64 kB tmpfs); the case is reported as skipped otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import tempfile
import traceback
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch

from gnnmd.cli import main
from gnnmd.models import PRETRAINED_DIR
from gnnmd.runfolder import RunFolderLock
from gnnmd.systems import load_system

SHORT = ["--replicas", "2", "--steps", "4", "--report-interval-ps", "0.008", "--checkpoint-interval-ps",
         "0.016", "--no-progress"]  # fmt: skip


class Exploit:
    """Unpickling it creates a file: proof that code ran."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def run_cli(*args: str) -> tuple[int | None, str]:
    """(exit status or None for a traceback, stderr)."""
    error = io.StringIO()
    with contextlib.redirect_stderr(error), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main([str(a) for a in args])
        except SystemExit as exit_:
            status = int(exit_.code or 0)
        except Exception:
            return None, traceback.format_exc()
    return status, error.getvalue()


def snapshot(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
            and not p.name.endswith(".lock")}  # fmt: skip


class Sweep:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.rows: list[dict] = []

    def path(self, name: str) -> Path:
        return self.work / name

    def refused(self, case: str, args: list, watch: Path | None = None, expect: str = "") -> None:
        """A bad input: must exit 2 with one line (containing ``expect``) and change no file in ``watch``."""
        before = snapshot(watch) if watch is not None else {}
        status, error = run_cli(*args)
        after = snapshot(watch) if watch is not None else {}
        lost = "yes" if any(after.get(name) != digest for name, digest in before.items()) else "no"
        # Warnings (e.g. the waters a structure file loses) come first; the error is one line.
        lines = [line for line in error.strip().splitlines() if not line.startswith("gnnmd: warning:")]
        line = lines[-1] if lines else ""
        if status is None:
            outcome = "TRACEBACK"
        elif status == 0:
            outcome = "SILENTLY WRONG"
        elif status == 2 and len(lines) == 1 and expect in line:
            outcome = "clear error"
        else:
            outcome = f"exit {status}: unclear"
        self.rows.append({"case": case, "outcome": outcome, "data lost": lost, "message": line[:160]})

    def ran(self, case: str, args: list, check: Callable[[], bool] = lambda: True) -> None:
        status, error = run_cli(*args)
        ok = status == 0 and check()
        outcome = "ran" if ok else ("TRACEBACK" if status is None else "SILENTLY WRONG")
        message = "" if ok else error.strip().splitlines()[-1][:160]
        self.rows.append({"case": case, "outcome": outcome, "data lost": "no", "message": message})


def structures(sweep: Sweep) -> dict[str, Path]:
    source = load_system("chignolin").pdb_path
    lines = source.read_text().splitlines()
    atoms = [i for i, line in enumerate(lines) if line.startswith("ATOM")]
    nan = list(lines)
    nan[atoms[1]] = nan[atoms[1]][:30] + "     nan" + nan[atoms[1]][38:]
    zero = [line[:30] + "   0.000   0.000   0.000" + line[54:] if line.startswith("ATOM") else line
            for line in lines]  # fmt: skip
    files = {"nan.pdb": "\n".join(nan), "zero.pdb": "\n".join(zero), "empty.pdb": "",
             "garbage.pdb": "\x00\x01binary\xff" * 50}  # fmt: skip
    paths = {}
    for name, text in files.items():
        paths[name] = sweep.path(name)
        paths[name].write_text(text + "\n")
    import openmm.app

    pdb = openmm.app.PDBFile(str(source))
    paths["cif"] = sweep.path("chignolin.cif")
    with open(paths["cif"], "w") as handle:
        openmm.app.PDBxFile.writeFile(pdb.topology, pdb.positions, handle)
    return paths


def model_files(sweep: Sweep) -> dict[str, Path]:
    checkpoint = torch.load(PRETRAINED_DIR / "default.pt", weights_only=True)
    paths = {name: sweep.path(name) for name in ("garbage.pt", "pickle.pt", "nan.pt", "model.pt")}
    paths["garbage.pt"].write_bytes(os.urandom(4096))
    torch.save({**checkpoint, "x": Exploit(sweep.path("pwned"))}, paths["pickle.pt"])
    name = next(iter(checkpoint["network"]))
    broken = {**checkpoint, "network": {**checkpoint["network"]}}
    broken["network"][name] = torch.full_like(checkpoint["network"][name], float("nan"))
    torch.save(broken, paths["nan.pt"])
    shutil.copy(PRETRAINED_DIR / "default.pt", paths["model.pt"])
    return paths


def simulate_cases(sweep: Sweep) -> None:
    s = ["simulate", "chignolin", *SHORT]
    files, models = structures(sweep), model_files(sweep)
    sweep.refused("unknown system name", ["simulate", "nowhere", *SHORT, "-o", sweep.path("a")])
    sweep.refused("missing PDB path", ["simulate", sweep.path("missing.pdb"), *SHORT, "-o", sweep.path("a")])
    for name in ("nan.pdb", "zero.pdb", "empty.pdb", "garbage.pdb"):
        sweep.refused(f"structure: {name}", ["simulate", files[name], *SHORT, "-o", sweep.path("a")])
    sweep.ran("structure: mmCIF file", ["simulate", files["cif"], *SHORT, "-o", sweep.path("cif-run")],
              lambda: (sweep.path("cif-run") / "checkpoint.pt").is_file())  # fmt: skip
    sweep.refused("model: missing file", [*s, "--model", sweep.path("none.pt"), "-o", sweep.path("a")])
    for name in ("garbage.pt", "pickle.pt", "nan.pt"):
        sweep.refused(f"model: {name}", [*s, "--model", models[name], "-o", sweep.path("a")])
    file = sweep.path("a-file")
    file.write_text("x")
    sweep.refused("-o is a file", [*s, "-o", file])
    sweep.refused("-o under a file (ENOTDIR)", [*s, "-o", file / "run"])
    sweep.refused("-o in /proc (ENOENT)", [*s, "-o", "/proc/gnnmd-run"])
    sweep.refused("-o in /sys (EPERM)", [*s, "-o", "/sys/gnnmd-run"])
    foreign = sweep.path("foreign")
    foreign.mkdir()
    (foreign / "notes.txt").write_text("precious")
    sweep.refused("-o holds other files", [*s, "-o", foreign], foreign)
    for bad in (["--dt-fs", "0"], ["--replicas", "0"], ["--ns", "0"], ["--temperature-k", "300,310,320"],
                ["--report-interval-ps", "0"], ["--skin-nm", "-1"]):  # fmt: skip
        args = [*s, *bad] if bad[0] != "--ns" else ["simulate", "chignolin", *SHORT[:2], "--ns", "0"]
        sweep.refused(f"option {' '.join(bad)}", [*args, "-o", sweep.path("b")])

    run = sweep.path("run")
    base = [*s, "--model", models["model.pt"], "-o", run]
    assert run_cli(*base)[0] == 0
    sweep.refused("fresh start over a run", base, run, "already holds a run")
    sweep.refused("--resume, other seed", [*base, "--resume", "--seed", "9"], run, "'seed'")
    changed = [a if a != "0.008" else "0.016" for a in base]
    sweep.refused("--resume, other report interval", [*changed, "--resume"], run, "report_interval_ps")
    sweep.refused(
        "--resume, other --dt-fs (not accepted)", [*base, "--resume", "--dt-fs", "2"], run, "accept"
    )
    sweep.refused("--resume, other --backend (not accepted)", [*base, "--resume", "--backend", "tabulated"],
                  run, "accept")  # fmt: skip
    sweep.refused(
        "--resume, other --format", [*base, "--resume", "--format", "xtc"], run, "trajectory_format"
    )
    shutil.copy(PRETRAINED_DIR / "cgschnet-benchmark.pt", models["model.pt"])
    sweep.refused("--resume, model file replaced at its path", [*base, "--resume"], run, "model_sha256")
    shutil.copy(PRETRAINED_DIR / "default.pt", models["model.pt"])
    with RunFolderLock(run):
        sweep.refused("run folder held by another process", [*base, "--resume"], run, "in use by pid")
    other = sweep.path("other")
    assert run_cli(*[a if a != "2" else "4" for a in s], "-o", other)[0] == 0
    saved = (run / "checkpoint.pt").read_bytes()
    shutil.copy(other / "checkpoint.pt", run / "checkpoint.pt")
    sweep.refused("--resume, checkpoint copied from another run", [*base, "--resume"], run, "another run")
    (run / "checkpoint.pt").write_bytes(saved[: len(saved) // 2])
    sweep.refused("--resume, truncated checkpoint", [*base, "--resume"], run, "checkpoint")
    torch.save({"x": Exploit(sweep.path("pwned"))}, run / "checkpoint.pt")
    sweep.refused("--resume, checkpoint with a pickle exploit", [*base, "--resume"], run, "checkpoint")
    (run / "checkpoint.pt").write_bytes(saved)
    record = (run / "run.json").read_text()
    (run / "run.json").write_text("{not json")
    sweep.refused("--resume, damaged run.json", [*base, "--resume"], run, "run.json")
    (run / "run.json").write_text(record)
    sweep.refused("--resume in an empty folder", [*s, "--resume", "-o", sweep.path("empty")])
    accepted = [*base, "--resume", "--dt-fs", "2", "--steps", "8", "--accept-change", "dt-fs"]
    sweep.ran("--resume, --dt-fs 2 --accept-change dt-fs", accepted,
              lambda: "changes" in json.loads((run / "run.json").read_text()))  # fmt: skip
    full_disk(sweep, s)


def full_disk(sweep: Sweep, s: list) -> None:
    disk = sweep.path("disk")
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]).returncode != 0:
        sweep.rows.append(
            {"case": "full disk", "outcome": "skipped (needs root)", "data lost": "", "message": ""}
        )
        return
    try:
        args = [*s, "--steps", "120", "--report-interval-ps", "0.004", "-o", disk / "run"]
        sweep.refused("full disk (64 kB tmpfs)", args, None, "No space left on device")
        before = snapshot(disk / "run")
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        straight = sweep.path("straight")
        run_cli(*args[:-1], straight)

        def same() -> bool:
            done = snapshot(disk / "run")
            return all(
                done.get(n) == snapshot(straight).get(n) for n in ("replica_0000.csv", "replica_0001.csv")
            )

        sweep.ran(
            "full disk, then --resume on a larger disk: equals a straight run", [*args, "--resume"], same
        )
        sweep.rows[-2]["data lost"] = "no" if before.get("checkpoint.pt") else "yes"
    finally:
        subprocess.run(["umount", str(disk)])


def data_cases(sweep: Sweep) -> None:
    chignolin = load_system("chignolin")
    x = np.repeat(chignolin.positions_nm[None], 8, axis=0).astype(np.float32)
    np.save(sweep.path("x.npy"), x)
    np.save(sweep.path("f.npy"), np.ones_like(x))
    np.save(sweep.path("x_angstrom.npy"), x * 10)
    np.save(
        sweep.path("objects.npy"), np.array([Exploit(sweep.path("pwned"))], dtype=object), allow_pickle=True
    )
    with open(sweep.path("pickle.npy"), "wb") as handle:
        pickle.dump(Exploit(sweep.path("pwned")), handle)
    arrays = ["data", "import-arrays", "chignolin", "--length-unit", "nm", "--energy-unit", "kJ/mol"]
    for name in ("objects.npy", "pickle.npy"):
        sweep.refused(f"import-arrays: {name}", [*arrays, "--coordinates", sweep.path(name), "--forces",
                      sweep.path("f.npy"), "-o", sweep.path("d.h5")])  # fmt: skip
    angstrom = ["--coordinates", sweep.path("x_angstrom.npy"), "--forces", sweep.path("f.npy")]
    sweep.refused("import-arrays: Å coordinates declared nm", [*arrays, *angstrom, "-o", sweep.path("d.h5")])
    np.save(sweep.path("f_short.npy"), np.ones_like(x)[:, :10])
    sweep.refused("import-arrays: forces of another shape", [*arrays, "--coordinates", sweep.path("x.npy"),
                  "--forces", sweep.path("f_short.npy"), "-o", sweep.path("d.h5")])  # fmt: skip


def import_cases(sweep: Sweep) -> None:
    """gnnmd import and gnnmd data qm: foreign files, pickles, bad frames."""
    import ase.build
    import ase.io

    tmn = ["import", "torchmd-net"]
    torch.save({"weights": torch.zeros(3)}, sweep.path("not_tmn.ckpt"))
    sweep.refused("import torchmd-net: not a checkpoint", [*tmn, sweep.path("not_tmn.ckpt"), "--topology",
                  "chignolin", "-o", sweep.path("i.pt")], expect="not a TorchMD-Net checkpoint")  # fmt: skip
    with open(sweep.path("exploit.ckpt"), "wb") as handle:
        pickle.dump(Exploit(sweep.path("pwned")), handle)
    sweep.refused("import schnetpack: a pickle exploit (not a model)", ["import", "schnetpack",
                  sweep.path("exploit.ckpt"), "-o", sweep.path("s.pt")])  # fmt: skip
    sweep.refused("import mlcg: a pickle exploit (raw pickle)", ["import", "mlcg", sweep.path("exploit.ckpt"),
                  "-o", sweep.path("m.pt")], expect="not a readable mlcg model file")  # fmt: skip
    torch.save({"model": Exploit(sweep.path("pwned"))}, sweep.path("exploit_zip.pt"))
    sweep.refused("import mlcg: a pickle exploit (torch.save archive)", ["import", "mlcg",
                  sweep.path("exploit_zip.pt"), "-o", sweep.path("m.pt")],
                  expect="not a pickled mlcg model")  # fmt: skip
    sweep.refused("import torchmd-net: a missing file", [*tmn, sweep.path("missing.ckpt"), "--topology",
                  "chignolin", "-o", sweep.path("i.pt")], expect="no such")  # fmt: skip
    frames = [ase.build.molecule("H2O"), ase.build.molecule("H2O")]
    frames[1].positions[1] = frames[1].positions[0]
    ase.io.write(str(sweep.path("overlap.xyz")), frames)
    qm = ["data", "qm", sweep.path("overlap.xyz"), "-o", sweep.path("q.h5"), "--engine", "tblite",
          "--method", "GFN2-xTB"]  # fmt: skip
    sweep.refused("data qm: overlapping atoms", qm, expect="frame 1")
    ase.io.write(str(sweep.path("water.xyz")), frames[:1])
    sweep.refused("data qm: impossible multiplicity", ["data", "qm", sweep.path("water.xyz"), "-o",
                  sweep.path("q2.h5"), "--multiplicity", "2"], expect="multiplicity 2")  # fmt: skip
    sweep.refused("data qm: a CG dataset", ["data", "qm", sweep.path("good.h5"), "-o", sweep.path("q3.h5")],
                  expect="not elements")  # fmt: skip


def train_cases(sweep: Sweep) -> None:
    chignolin = load_system("chignolin")
    rng = np.random.default_rng(0)
    x = chignolin.positions_nm[None] + rng.normal(0, 0.02, (200, chignolin.topology.n_beads, 3))
    f = rng.normal(0, 100, x.shape)
    from gnnmd.data.dataset import write_molecule

    good = sweep.path("good.h5")
    write_molecule(good, chignolin.topology, x, f)
    spoiled = {"nan-force.h5": lambda xs, fs: fs.__setitem__((5, 3, 0), np.nan),
               "1e30-force.h5": lambda xs, fs: fs.__setitem__((7, 0, 2), 1e30),
               "angstrom.h5": lambda xs, fs: xs.__imul__(10)}  # fmt: skip
    for name, spoil in spoiled.items():
        shutil.copy(good, sweep.path(name))
        with h5py.File(sweep.path(name), "a") as file:
            xs, fs = file["molecules/chignolin/coordinates"][()], file["molecules/chignolin/forces"][()]
            spoil(xs, fs)
            file["molecules/chignolin/coordinates"][...] = xs
            file["molecules/chignolin/forces"][...] = fs
    data = bytearray(good.read_bytes())
    for offset in range(2048, len(data), 97):
        data[offset] ^= 0xFF
    sweep.path("bitflip.h5").write_bytes(bytes(data))
    sweep.path("text.h5").write_text("not hdf5")
    tiny = sweep.path("tiny.json")
    tiny.write_text(json.dumps({"hidden_channels": 8, "num_filters": 8, "num_interactions": 1, "num_rbf": 8,
                                "cutoff_nm": 1.0}))  # fmt: skip
    t = ["train", "--model-config", tiny, "--epochs", "1", "--batch-size", "32"]
    sweep.refused("train: missing dataset", [*t, "--data", sweep.path("none.h5"), "-o", sweep.path("t0")])
    for name in ("text.h5", "bitflip.h5", *spoiled):
        sweep.refused(f"train: {name}", [*t, "--data", sweep.path(name), "-o", sweep.path("t0")])
    broken = sweep.path("broken.json")
    broken.write_text("{hidden")
    sweep.refused("train: malformed --model-config JSON", [*t[:1], "--model-config", broken, "--data", good,
                  "-o", sweep.path("t0")])  # fmt: skip
    run = sweep.path("trained")
    assert run_cli(*t, "--data", good, "-o", run)[0] == 0
    other = sweep.path("other.h5")
    write_molecule(other, chignolin.topology, x[:100], f[:100])
    longer = [a if a != "1" else "2" for a in t]
    sweep.refused(
        "train --resume on another dataset", [*longer, "--data", other, "-o", run], run, "dataset_sha256"
    )
    with RunFolderLock(run):
        sweep.refused("train: folder held by another process", [*longer, "--data", good, "-o", run], run)
    state = torch.load(run / "train_state.pt", weights_only=True)
    torch.save({**state, "x": Exploit(sweep.path("pwned"))}, run / "train_state.pt")
    sweep.refused("train: state file with a pickle exploit", [*longer, "--data", good, "-o", run], run)
    foreign = sweep.path("foreign")
    sweep.refused("train: folder holds other files", [*t, "--data", good, "-o", foreign], foreign)


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        sweep = Sweep(args.work or Path(scratch))
        sweep.work.mkdir(parents=True, exist_ok=True)
        simulate_cases(sweep)
        data_cases(sweep)
        train_cases(sweep)
        import_cases(sweep)
        executed = sweep.path("pwned").exists()
    lines = ["| case | outcome | data lost | message |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['outcome']} | {r['data lost']} | {r['message'].replace('|', '/')} |"
              for r in sweep.rows]  # fmt: skip
    counts = {
        o: sum(r["outcome"] == o for r in sweep.rows) for o in sorted({r["outcome"] for r in sweep.rows})
    }
    lines += [
        "",
        f"{len(sweep.rows)} cases: {counts}; code executed from a file: {'YES' if executed else 'no'}",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main_()
