#!/usr/bin/env bash
# ms/step of one small case with --threads 1, 2 and auto, on an idle machine and beside one busy
# process (a Python busy loop), side by side in one run. Run on an otherwise idle machine.
#   bash benchmarks/threads_under_load.sh [extra gnnmd bench options]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
extra=("$@")
[ ${#extra[@]} -eq 0 ] && extra=(--system chignolin --replicas 1 --model cgschnet-benchmark
                                 --backend tabulated --steps 60 --warmup 5)
out="$(mktemp -d)"
measure() {  # label threads
  "$root/.venv/bin/gnnmd" bench "${extra[@]}" --threads "$2" --json "$out/r.json" > /dev/null 2>&1
  "$root/.venv/bin/python" -c "import json, sys; r = json.load(open(sys.argv[1]))['benchmarks'][0]; \
print(f\"{sys.argv[2]:>6} --threads {sys.argv[3]:<5} {r['ms_per_step']:8.2f} ms/step  threads {r['threads']} \
({r['thread_policy']})\")" "$out/r.json" "$1" "$2"
}
for threads in 1 2 auto; do measure idle "$threads"; done
python3 -c "while True: pass" & busy=$!
trap 'kill $busy 2>/dev/null || true; rm -rf "$out"' EXIT
sleep 65  # let the 1-minute load average see the busy process, as it would on a shared node
for threads in 1 2 auto; do measure loaded "$threads"; done
