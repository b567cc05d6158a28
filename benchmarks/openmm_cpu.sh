#!/usr/bin/env bash
# OpenMM (TorchForce and PythonForce routes) next to the replica runner on CPU: chignolin and
# engrailed 1ENH, 1 and 64 replicas, shipped `default` model, float32, 4 fs. One row of
# benchmarks/RESULTS.md per command. 1ENH x 64 takes about 5 s per step here: 5 timed steps.
# Usage: bash benchmarks/openmm_cpu.sh [OUTDIR]   (from the repository root)
set -euo pipefail
out=${1:-out/openmm_bench}
mkdir -p "$out"
gnnmd=.venv/bin/gnnmd
for spec in "chignolin 1 200 20" "chignolin 64 30 3" "engrailed 1 50 5" "engrailed 64 5 1"; do
    read -r system replicas steps warmup <<<"$spec"
    common=(--system "$system" --model default --replicas "$replicas" --steps "$steps" --warmup "$warmup")
    $gnnmd bench "${common[@]}" --engine replica-runner --json "$out/${system}_x${replicas}_runner.json"
    $gnnmd bench "${common[@]}" --engine openmm --route torch --json "$out/${system}_x${replicas}_torch.json"
    $gnnmd bench "${common[@]}" --engine openmm --route python --json "$out/${system}_x${replicas}_python.json"
done
