#!/usr/bin/env bash
# The user's three configs on one GPU in one run of under 8 minutes, setup included (issue 20, item 3).
#
# On the GPU machine (Python 3.12 + torch with CUDA, no network), from the repository root, with the
# folder made here by `make gpu-bundle` beside it (.gpu_bundle: wheels + a compressed Pong subset):
#     bash benchmarks/gpu.sh                 # results in $OUT (gpu.json, gpu.md, gpu.log)
# Here, on CPU, the same parts on the user's configs shrunk to 1 layer x 32, batches 2 and 4, two steps:
#     PYTHON=.venv/bin/python bash benchmarks/gpu.sh --dry_run
#
# Every part is its own process under its own `timeout`, cut further to what is left of BUDGET_S, so a
# slow compile or an out-of-memory batch costs that part alone and the run always ends in time; a part
# left without time is skipped and named in the report. Progress lines carry the clock and the seconds
# since the start.
set -u
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--dry_run" ]] && DRY=1
BUNDLE=${BUNDLE:-.gpu_bundle}
WORK=${WORK:-/tmp/genie_gpu}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

if ((DRY)); then
    OUT=${OUT:-benchmarks/results/gpu-dry}
    BUDGET_S=${BUDGET_S:-3600} # a 2-core CPU beside other jobs: slow, and only the code paths matter
    SCALE=10                    # every part's cap x10
    ARGS=(--device cpu --shrink --compile_backend aot_eager)
    BATCHES=(2 4)
    COMPILE_BATCHES=(2 4) # both here, to run the recompile at a second shape
    TIMING=(--steps 2 --seconds 1)
    MEMORY=(--steps 10 --max_steps 20 --seconds 10)
else
    OUT=${OUT:-benchmarks/results/gpu}
    BUDGET_S=${BUDGET_S:-450} # 7.5 minutes: the run's limit is 8
    SCALE=1
    ARGS=(--device cuda --compile_backend inductor)
    BATCHES=(8 64)
    COMPILE_BATCHES=(8) # a second shape recompiles: time the next part's compile instead
    TIMING=(--steps 20 --seconds 6)
    MEMORY=(--steps 100 --max_steps 3000 --seconds 35)
fi
ARGS+=(--work "$WORK/parts" --data_dir "$WORK/data")

START=$(date +%s)
rm -rf "$WORK/parts"
mkdir -p "$OUT" "$WORK/parts" "$WORK/data"
LOG="$OUT/gpu.log"
: >"$LOG"

log() { printf '[%s +%3ds] %s\n' "$(date +%H:%M:%S)" $(($(date +%s) - START)) "$*" | tee -a "$LOG"; }

# part NAME CAP_S CMD...: CMD under `timeout`, at most CAP_S x SCALE and what is left of the budget less
# 20 s for the report; its exit status, seconds and cap go to parts.txt (124/137: stopped at the cap).
part() {
    local name=$1 cap=$(($2 * SCALE)) t0 rc
    shift 2
    local left=$((BUDGET_S - ($(date +%s) - START) - 20))
    ((cap > left)) && cap=$left
    if ((cap < 10)); then
        log "skip $name: ${left} s left of the budget"
        echo "$name -1 0 0" >>"$WORK/parts/parts.txt"
        return
    fi
    log "start $name (cap ${cap} s)"
    t0=$(date +%s)
    timeout -k 5 "$cap" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    log "end $name: exit $rc after $(($(date +%s) - t0)) s$( ((rc == 124 || rc == 137)) && echo ' (its cap)')"
    echo "$name $rc $(($(date +%s) - t0)) $cap" >>"$WORK/parts/parts.txt"
}

log "genie GPU benchmark: $( ((DRY)) && echo 'dry run on CPU' || echo 'GPU run'), budget ${BUDGET_S} s, out $OUT"
if ((DRY)); then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    timeout 15 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>&1 | tee -a "$LOG"
    # the project's missing dependencies, from the wheels brought along (nothing can be downloaded there)
    part install 60 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$BUNDLE"/wheels/*.whl
    export PYTHONPATH="$PWD:$WORK/site"
fi
timeout 30 $PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
    "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())' 2>&1 | tee -a "$LOG"

B=benchmarks/gpu_bench.py
part ingest 60 $PY -m genie.cli ingest "$BUNDLE/pong.npz" --dataset pong --data_dir "$WORK/data" \
    --episode_frames 500 --overwrite
part peak 30 $PY $B peak "${ARGS[@]}"
part upstream 100 $PY $B upstream "${ARGS[@]}"
# eager first (the numbers that matter most), then the memory run (it sizes itself by the eager tokenizer's
# speed), then torch.compile, the slowest to start
part tokenizer_eager 50 $PY $B stage tokenizer --mode eager --batch "${BATCHES[@]}" "${TIMING[@]}" "${ARGS[@]}"
part lam_eager 70 $PY $B stage lam --mode eager --batch "${BATCHES[@]}" "${TIMING[@]}" "${ARGS[@]}"
part dynamics_eager 80 $PY $B stage dynamics --mode eager --batch "${BATCHES[@]}" "${TIMING[@]}" "${ARGS[@]}"
part memory 70 $PY $B memory --batch "${BATCHES[0]}" "${MEMORY[@]}" "${ARGS[@]}"
for s in tokenizer dynamics lam; do # the LAM last: 40 layers of 1024 compile the longest
    part "${s}_compile" 75 $PY $B stage $s --mode compile --batch "${COMPILE_BATCHES[@]}" "${TIMING[@]}" "${ARGS[@]}"
done
timeout 25 $PY $B report --work "$WORK/parts" --out "$OUT" 2>&1 | tee -a "$LOG" # the budget keeps 20 s for it: at most 455 s in all
log "done in $(($(date +%s) - START)) s: $OUT/gpu.json, $OUT/gpu.md, $OUT/gpu.log"
