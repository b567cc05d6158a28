#!/usr/bin/env bash
# Reference-backend baselines on CPU, one command per row of benchmarks/RESULTS.md.
# Usage: bash benchmarks/core_baseline.sh [OUTDIR]   (run from the repository root after `make run`)
set -euo pipefail
out=${1:-out/baseline}
mkdir -p "$out"
gnnmd=.venv/bin/gnnmd
tuned=(env MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736)
$gnnmd bench --system chignolin --model default --replicas 64 --steps 200 --warmup 20 --json "$out/chignolin_default_x64.json"
$gnnmd bench --system engrailed --model default --replicas 64 --steps 20 --warmup 3 --json "$out/engrailed_default_x64.json"
$gnnmd bench --system chignolin --model cgschnet-benchmark --replicas 64 --steps 5 --warmup 1 --json "$out/chignolin_benchmark_x64_glibc.json"
"${tuned[@]}" $gnnmd bench --system chignolin --model cgschnet-benchmark --replicas 64 --steps 5 --warmup 1 --json "$out/chignolin_benchmark_x64_tuned.json"
$gnnmd bench --system engrailed --model cgschnet-benchmark --replicas 1 --steps 5 --warmup 1 --json "$out/engrailed_benchmark_x1_glibc.json"
