#!/usr/bin/env bash
# Replica-runner throughput on CPU (replica-runner issue): the rows of benchmarks/RESULTS.md's
# "replica runner" section. Usage: bash benchmarks/runner_cpu.sh [OUTDIR]  (from the repository root)
# Skin 0 filters all candidate pairs every step (the core issue's path); 0.2 nm is the default Verlet skin.
set -euo pipefail
out=${1:-out/runner}
mkdir -p "$out"
gnnmd=.venv/bin/gnnmd
$gnnmd bench --system chignolin --replicas 1,8,64 --skin-nm 0,0.2 --steps 50 --warmup 5 \
    --json "$out/chignolin.json" --plot "$out/chignolin.png"
$gnnmd bench --system engrailed --replicas 1,8 --skin-nm 0,0.2 --steps 20 --warmup 3 --json "$out/engrailed_1_8.json"
# 1ENH x 64 takes seconds per step on 2 cores: few steps.
$gnnmd bench --system engrailed --replicas 64 --skin-nm 0,0.2 --steps 5 --warmup 2 --json "$out/engrailed_64.json"
