#!/usr/bin/env bash
# Interleaved throughput of two commits of gnnmd, side by side on one machine.
#   bash benchmarks/compare_commits.sh OLD_COMMIT [ROUNDS] [-- extra gnnmd bench options]
# Runs `gnnmd bench` from a worktree of OLD_COMMIT and from this tree, alternately, ROUNDS
# times (default 2), with the repository's venv; prints one line per row (system, replicas,
# engine, backend, implementation, ms/step, ns/day). Run it on an otherwise idle machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
old="$1"; shift
rounds="${1:-2}"; [ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
extra=("$@")
[ ${#extra[@]} -eq 0 ] && extra=(--system chignolin,engrailed --replicas 64 --model cgschnet-benchmark
                                 --backend tabulated --steps 20 --warmup 3)
scratch="$(mktemp -d)"
trap 'git -C "$root" worktree remove --force "$scratch/old" >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
git -C "$root" worktree add -q "$scratch/old" "$old"
# The compiled op library is built per tree (it is not in git; a stamp ties it to its sources).
(cd "$scratch/old" && PYTHONPATH="$scratch/old" "$root/.venv/bin/python" -m gnnmd.kernels.build > /dev/null 2>&1)
cd "$scratch"  # not the repository: python -m would import the tree in the working directory
for round in $(seq "$rounds"); do
  for side in old new; do
    tree="$root"; [ "$side" = old ] && tree="$scratch/old"
    PYTHONPATH="$tree" "$root/.venv/bin/python" -m gnnmd.cli bench "${extra[@]}" \
      --json "$scratch/$side-$round.json" > /dev/null 2>&1
    "$root/.venv/bin/python" - "$scratch/$side-$round.json" "$side" "$round" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["benchmarks"]
for r in rows:
    print(sys.argv[2], sys.argv[3], r["system"], r["replicas"], r["engine"], r["backend"], r.get("implementation"),
          f"{r['ms_per_step']:.2f} ms/step",
          f"{r['ns_per_day']:.1f} ns/day")
PY
  done
done
