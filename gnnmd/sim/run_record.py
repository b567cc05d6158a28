"""The run record (``run.json``) of ``gnnmd simulate``: what defines a run and what a resume may change.

A resumed run is the same run, or it is refused. The record holds the run's
identity (:data:`IDENTITY_FIELDS`: systems and the SHA-256 of their structure
files, the model and the SHA-256 of its file, seed, precision, thermostat,
report interval, process count, ...) and a random ``run_id`` that every
checkpoint of the run repeats. A resume that differs in an identity field is
refused, naming the field, the recorded and the asked value. Two fields may
change when the user says so (:data:`ACCEPTABLE_CHANGES`, ``--accept-change``):
the time step (to continue after a blow-up with a smaller one) and the kernel
backend. Each accepted change is appended to ``changes`` with the step and
time at which it took effect. :data:`FREE_FIELDS` (run length, checkpoint and
health intervals, ...) may change on any resume; the ``resumed`` list keeps
every invocation's values.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from gnnmd.errors import CheckpointError
from gnnmd.runfolder import RunFolderError, atomic_write_bytes

RUN_FILE = "run.json"
SCHEMA = "gnnmd-simulate"
SCHEMA_VERSION = 2

#: Fields a resume must repeat exactly: a change would mix two runs in one set of outputs.
IDENTITY_FIELDS = (
    "systems", "system_sha256", "replicas_per_system", "model", "model_sha256", "seed", "dtype",
    "skin_nm", "thermostat_temperatures_k", "frictions_per_ps", "world_size", "trajectory_format",
    "report_interval_ps", "committee", "committee_sha256",
)  # fmt: skip
#: Option name (``--accept-change``) -> field: changes allowed when asked for, recorded with their step.
ACCEPTABLE_CHANGES = {"dt-fs": "timestep_fs", "backend": "backend"}
#: Fields any resume may change; the new values are recorded in the ``resumed`` entry.
FREE_FIELDS = (
    "steps", "ns", "checkpoint_interval_ps", "health_interval", "device", "on_failure",
    "max_temperature_factor", "committee_interval", "committee_threshold_kj_mol_nm", "implementation",
    "threads", "thread_policy",
)  # fmt: skip


def new_run_id() -> str:
    return uuid.uuid4().hex


def read_record(directory: Path) -> dict:
    """The run record in ``directory``; a clear error when it is missing or unreadable."""
    path = Path(directory) / RUN_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; nothing to resume in {directory}")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable run record ({error})") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise CheckpointError(f"{path}: field 'schema' is not {SCHEMA!r}; not a gnnmd simulate run")
    return record


def current(record: dict, field: str) -> Any:
    """``field``'s value now: the recorded value after every accepted change."""
    value = record.get(field)
    for change in record.get("changes", []):
        if change["field"] == field:
            value = change["new"]
    return value


def compare(record: dict, asked: dict, accepted: set[str], path: Path) -> dict[str, tuple[Any, Any]]:
    """Check a resume against the record; returns the accepted changes, field -> (old, new).

    Raises:
        RunFolderError: the record predates the fields that identify a run.
        CheckpointError: an identity field differs, or an acceptable one differs without being accepted.
    """
    unknown = sorted(accepted - set(ACCEPTABLE_CHANGES))
    if unknown:
        raise ValueError(f"--accept-change {','.join(unknown)}: only {list(ACCEPTABLE_CHANGES)} can change")
    missing = [key for key in (*IDENTITY_FIELDS, "run_id") if key not in record]
    if missing:
        raise RunFolderError(
            f"{path}: has no field(s) {missing} (written by an older gnnmd), so a resume cannot be "
            "checked to be the same run; start a new run in another folder"
        )
    for key in IDENTITY_FIELDS:
        if record[key] != asked[key]:
            raise CheckpointError(
                f"{path}: field {key!r} is {record[key]!r} but this command asks for {asked[key]!r}; "
                "resume with the options (and files) of the original run"
            )
    changes = {}
    for option, key in ACCEPTABLE_CHANGES.items():
        old, new = current(record, key), asked[key]
        if old == new:
            continue
        if option not in accepted:
            raise CheckpointError(
                f"{path}: field {key!r} is {old!r} but this command asks for {new!r}; pass "
                f"--accept-change {option} to continue with the new value (it is recorded with its step)"
            )
        changes[key] = (old, new)
    return changes


def resumed(
    record: dict, asked: dict, changes: dict[str, tuple[Any, Any]], step: int, time_ps: float, extra: dict
) -> dict:
    """The record after a resume: accepted changes with their step and time, and this invocation."""
    updated = dict(record)
    updated["changes"] = list(record.get("changes", [])) + [
        {"field": key, "old": old, "new": new, "step": int(step), "time_ps": float(time_ps)}
        for key, (old, new) in changes.items()
    ]
    for key in FREE_FIELDS:
        if key in asked:
            updated[key] = asked[key]
    entry = {key: asked[key] for key in FREE_FIELDS if key in asked}
    updated["resumed"] = list(record.get("resumed", [])) + [{"from_step": int(step), **entry, **extra}]
    return updated


def check_checkpoint(path: Path, document: dict, record: dict, replicas: list[int]) -> None:
    """A checkpoint must belong to this run and account for every replica of this process."""
    run_id = document["extra"].get("run_id")
    if run_id != record["run_id"]:
        raise CheckpointError(
            f"{path}: field 'extra.run_id' is {run_id!r} but {RUN_FILE} names run "
            f"{record['run_id']!r}: the checkpoint belongs to another run"
        )
    held = [int(i) for i in document["replica_ids"]]
    dropped = sorted(int(k) for k in document["extra"].get("dropped", {}))
    if sorted(held + dropped) != sorted(replicas):
        raise CheckpointError(
            f"{path}: field 'replica_ids' is {held} (dropped: {dropped}) but this process runs "
            f"replicas {replicas}: the checkpoint belongs to another run"
        )


def write_record(directory: Path, record: dict) -> None:
    """Write ``run.json`` atomically."""
    text = json.dumps(record, indent=2) + "\n"
    atomic_write_bytes(Path(directory) / RUN_FILE, lambda file: file.write(text.encode()))
