#!/usr/bin/env bash
# The GPU run, in one command, bounded to 9 minutes:
#
#   benchmarks/gpu/run.sh OUTDIR [--dry-run]
#
# from the checkout, with nothing installed but torch (and, for the Triton kernel, triton): the code is
# found through PYTHONPATH, python is $PYTHON or python3. Stages, each with its own time cap and log:
#
#   env        device, driver, torch/triton/CUDA/cuDNN versions, which wanted kernels the registry has
#   peaks      bf16/fp16 matmul peaks, fp32 with TF32 off and on, copy bandwidth       (GPU timing, alone)
#   pytest     pytest -m gpu, per-test timeout where pytest-timeout is present         } correctness, in
#   verify-*   triad verify KERNEL in bfloat16 and float16 (triton, sdpa-flash,        } parallel (not
#              sdpa-efficient, sdpa-cudnn, flex; native and flex through               } timing)
#              --interface flash; those the registry has)                              }
#   bench      triad bench --preset gpu: JSON and PNG                                  (GPU timing, alone)
#
# Timing stages never share the GPU (with each other or anything else); the correctness stages run
# side by side (16 CPU cores). A stage that fails or runs out of time does not stop the others; the
# end is a table of the stages (ok / failed / timed out / skipped, seconds, result). OUTDIR ends
# with a handful of files, ready for benchmarks/results/: summary.txt, logs.txt (every stage's log),
# machine.json (env + peaks), verify.json (the verify reports), bench.json, bench.png.
#
# --dry-run: the same plan on the CPU (the GPU if there is one) with tiny budgets and grids, in
# seconds: it checks that every stage's command starts and writes its output (CI runs it:
# equivalence_tests/test_gpu_script.py). Budgets and the split of the 9 minutes: docs/benchmarks.md.
set -uo pipefail

usage() { echo "usage: $0 OUTDIR [--dry-run]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
OUTDIR=$1
DRY=0
if [[ $# -eq 2 ]]; then [[ $2 == --dry-run ]] || usage; DRY=1; fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci MPLBACKEND=Agg
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)  # absolute, before the cd: a relative OUTDIR is the caller's
cd "$ROOT" || exit 2
LOGS=$OUTDIR/logs
rm -rf "$LOGS" && mkdir -p "$LOGS" || exit 2
: > "$LOGS/stages.tsv"

# The budget split (seconds; each can be set from the environment, e.g. BENCH_S=300). GPU: env 20, peaks 45,
# correctness 180 (each verify 170), bench 270 (its cases 200: 70 s for start-up, the matmul peaks before and
# after, the last case started and the files), 10 to collect: 525 of the 540.
if (( DRY )); then
  : "${TOTAL:=240}" "${ENV_S:=60}" "${PEAKS_S:=60}" "${CHECKS_S:=120}" "${BENCH_S:=90}" "${JOBS:=3}"
  DEVICE=cpu EXAMPLES=1 DTYPES=(bfloat16) BENCH=(--preset smoke --budget 2)  # one dtype: the same commands
  export TRITON_INTERPRET=1  # a Triton kernel on the CPU runs under the interpreter
else
  : "${TOTAL:=540}" "${ENV_S:=20}" "${PEAKS_S:=45}" "${CHECKS_S:=180}" "${BENCH_S:=270}" "${JOBS:=12}"
  : "${EXAMPLES:=200}"
  DEVICE=cuda DTYPES=(bfloat16 float16) BENCH=(--preset gpu --budget 200)
fi
: "${VERIFY_S:=$(( CHECKS_S - 10 ))}"
DEADLINE=$(( SECONDS + TOTAL - 10 ))  # 10 s kept for collecting the files
if command -v nproc >/dev/null; then (( JOBS > $(nproc) )) && JOBS=$(nproc); fi

say() { echo "[$(date -u +%H:%M:%S)] $*"; }

# stage NAME CAP COMMAND...: COMMAND with at most CAP seconds (less if the run's deadline is nearer), its output
# in logs/NAME.log, one line (name, status, seconds, detail) in logs/stages.tsv.
stage() {
  local name=$1 cap=$2
  shift 2
  local left=$(( DEADLINE - SECONDS ))
  (( cap > left )) && cap=$left
  if (( cap < 3 )); then
    printf '%s\tskipped\t0\tno time left of the %s s\n' "$name" "$TOTAL" >> "$LOGS/stages.tsv"
    say "$name: skipped (no time left)"
    return
  fi
  say "$name: started (cap $cap s)"
  local started=$SECONDS rc status
  timeout --kill-after=10 "$cap" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    2) status=${EXIT2:-failed} ;;  # triad verify: 2 is "unsupported" (or a bad kernel): the detail says which
    124|137) status="timed out" ;;
    *) status=failed ;;
  esac
  printf '%s\t%s\t%s\texit %s, cap %s s\n' "$name" "$status" $(( SECONDS - started )) "$rc" "$cap" >> "$LOGS/stages.tsv"
  say "$name: $status (exit $rc, $(( SECONDS - started )) s)"
}

# background NAME CAP COMMAND...: a stage in the background, at most JOBS at a time.
background() {
  while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n; done
  stage "$@" &
}

COLLECTED=0
finish() {
  (( COLLECTED )) && return
  COLLECTED=1
  local pid
  for pid in $(jobs -rp); do  # stages still running (interrupted): their timeout, then the stage itself
    pkill -TERM -P "$pid" 2>/dev/null
    kill "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  say "collecting into $OUTDIR"
  if timeout 60 "$PY" benchmarks/gpu/steps.py collect "$OUTDIR" > "$LOGS/collect.out" 2>&1; then
    rm -rf "$LOGS"
    cat "$OUTDIR/summary.txt"
  else
    cat "$LOGS/collect.out" "$LOGS/stages.tsv"
    echo "collect failed: the stages' own files are in $LOGS"
  fi
}
trap finish EXIT
trap 'exit 130' INT TERM

say "GPU run of $ROOT into $OUTDIR ($(( DRY )) = dry run), $TOTAL s at most"

# 1. The machine, then its ceilings (a timing stage: alone).
stage env "$ENV_S" "$PY" benchmarks/gpu/steps.py env "$LOGS/env.json"
cat "$LOGS/env.log"
dry_flag=(); (( DRY )) && dry_flag=(--dry-run)
stage peaks "$PEAKS_S" "$PY" benchmarks/gpu/steps.py peaks "$LOGS/peaks.json" "${dry_flag[@]}"
cat "$LOGS/peaks.log"

# 2. Correctness, side by side: pytest -m gpu and triad verify on each wanted kernel the registry has.
pytest_args=(-m gpu -q -p no:cacheprovider --durations=10)
"$PY" -c "import pytest_timeout" 2>/dev/null && pytest_args+=(--timeout=120)
(( ! DRY )) && "$PY" -c "import xdist" 2>/dev/null && pytest_args+=(-n 4)
OMP_NUM_THREADS=2 background pytest "$CHECKS_S" "$PY" -m pytest "${pytest_args[@]}"
# "KERNEL<TAB>present" or "KERNEL<TAB>absent: why", from the registry as the env stage read it
"$PY" -c "import json, sys; w = json.load(open(sys.argv[1]))['kernels']['wanted']
print('\n'.join(f'{k}\t{s}' for k, s in w.items()))" "$LOGS/env.json" > "$LOGS/wanted.tsv" 2>/dev/null ||
  printf 'verify-*\tskipped\t0\tthe registry was not read (env failed)\n' >> "$LOGS/stages.tsv"
while IFS=$'\t' read -r -u 3 kernel state; do
  if [[ $state != present ]]; then
    printf 'verify-%s\tskipped\t0\tnot in the registry of this checkout (%.150s)\n' "$kernel" "$state" \
      >> "$LOGS/stages.tsv"
    say "verify-$kernel: skipped, not in the registry: $state"
    continue
  fi
  interface=(); name=$kernel
  if [[ $kernel == */* ]]; then  # NAME/INTERFACE: the built-in through FlashAttention's interface
    interface=(--interface "${kernel#*/}"); name=${kernel%%/*}; kernel=${kernel/\//-}
  fi
  for dtype in "${DTYPES[@]}"; do
    EXIT2=unsupported OMP_NUM_THREADS=1 background "verify-$kernel-$dtype" "$VERIFY_S" "$PY" -m triad verify "$name" \
      "${interface[@]}" --device "$DEVICE" --dtype "$dtype" --max-examples "$EXAMPLES" --seed 0 \
      --json "$LOGS/verify-$kernel-$dtype.json" --repro "$LOGS/verify-$kernel-$dtype-repro.py"
  done
done 3< "$LOGS/wanted.tsv"
wait

# 3. The benchmark (a timing stage: alone), every kernel of the registry.
stage bench "$BENCH_S" "$PY" -m triad bench "${BENCH[@]}" --json "$OUTDIR/bench.json" --plot "$OUTDIR/bench.png"
say "done in $SECONDS s"
