#!/usr/bin/env bash
# Is long play a matter of scale? (issue 17) On one GPU in under 8 minutes, setup included: the tiny tokenizer,
# then on it, on the true actions, the tiny dynamics preset (2 x 128, batch 8, 1,500 steps) and the same at a
# GPU's size (experiments/configs/dynamics_gpu_large.yaml: 8 x 512, batch 32, 3,000 steps), each evaluated by
# `genie eval dynamics` (ΔtPSNR over 256 clips, the 1,000-frame long play's object counts). Both worlds train
# on the same 20,000 Pong frames recorded there, so they compare with each other, not with the CPU's
# 40,000-frame numbers. On the CPU, 2x the steps and 2x the depth did not keep the ball
# (docs/dynamics.md); this asks what ~35x the parameters and 4x the batch do.
#
# On the GPU machine (Python 3.12 + torch with CUDA, no network), from the repository root, with .gpu_bundle
# made by `make gpu-bundle GPU_EXTRA=av==18.1.0` (its wheels only; PyAV for the evaluation's videos, ~40 MiB
# carried in all):
#     bash experiments/gpu_long_play.sh          # results in $OUT: eval JSONs, metrics, long_play.md, log
# Here, on CPU, the same commands for a few steps (the code paths only):
#     PYTHON=.venv/bin/python bash experiments/gpu_long_play.sh --dry_run
#
# Each training runs under a time cap that stops it with SIGTERM, which saves the step it is at; the
# evaluation then reads that checkpoint, so a slower GPU than planned gives fewer steps, not no result.
set -u
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--dry_run" ]] && DRY=1
BUNDLE=${BUNDLE:-.gpu_bundle}
WORK=${WORK:-/tmp/genie_gpu_long_play}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if ((DRY)); then
    OUT=${OUT:-experiments/results/gpu_long_play-dry}
    DEVICE=cpu
    STEPS=(--max_steps 4) # every run, the large one shrunk (below); the caps are not reached
    FRAMES=3000
    CAPS=(600 600 600 900)
else
    OUT=${OUT:-experiments/results/gpu_long_play}
    DEVICE=cuda
    STEPS=()
    FRAMES=20000 # ~30 s at ALE's ~650 frames/s with the identifiability probe (2 CPU cores here)
    CAPS=(60 60 150 90) # tokenizer, tiny dynamics, large dynamics, each evaluation (seconds)
fi
RUNS=$WORK/runs
LARGE=experiments/configs/dynamics_gpu_large.yaml
START=$(date +%s)
rm -rf "$WORK"
mkdir -p "$OUT" "$RUNS" "$WORK/data"
if ((DRY)); then # the large config's code paths at a CPU's size: 1 layer x 64, batch 4
    sed -e 's/num_layers: 8, d_model: 512/num_layers: 1, d_model: 64/' -e 's/batch_size: 32/batch_size: 4/' \
        "$LARGE" >"$WORK/dynamics_gpu_large_dry.yaml"
    LARGE=$WORK/dynamics_gpu_large_dry.yaml
fi
LOG="$OUT/gpu_long_play.log"
: >"$LOG"
log() { printf '[%s +%3ds] %s\n' "$(date +%H:%M:%S)" $(($(date +%s) - START)) "$*" | tee -a "$LOG"; }
# capped SECONDS CMD...: CMD stopped by SIGTERM at SECONDS (a training saves its step), killed 20 s later
capped() {
    local cap=$1
    shift
    timeout -s TERM -k 20 "$cap" "$@" 2>&1 | tee -a "$LOG"
    log "exit ${PIPESTATUS[0]}"
}
latest() { ls -v "$1"/*/run_*/checkpoint_step_*.pt 2>/dev/null | tail -1; }

log "long play at two sizes: $( ((DRY)) && echo 'dry run on CPU' || echo 'GPU run'), out $OUT"
if ((DRY)); then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    timeout 15 nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee -a "$LOG"
    timeout 60 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" "$BUNDLE"/wheels/*.whl 2>&1 | tee -a "$LOG"
    export PYTHONPATH="$PWD:$WORK/site"
fi
G="$PY -m genie.cli"
# Pong recorded there from ALE (its ROM ships in ale-py, a wheel of the bundle): true actions and the game's
# objects, which the long-play counts need (an ingested array has neither)
capped 60 $G collect pong --data_dir "$WORK/data" --frames "$FRAMES" --overwrite
COMMON=(--data_dir "$WORK/data" --dataset pong --device "$DEVICE" --no_eval --quiet "${STEPS[@]}")

log "tokenizer (tiny preset)"
capped "${CAPS[0]}" $G train tokenizer --config configs/tiny/tokenizer.yaml --output_dir "$RUNS/tokenizer" "${COMMON[@]}"
TOK=$(latest "$RUNS/tokenizer")
[[ -n "$TOK" ]] || { log "no tokenizer checkpoint: stopped"; exit 1; }

for size in tiny large; do
    config=configs/tiny/dynamics.yaml cap=${CAPS[1]}
    [[ $size == large ]] && config=$LARGE cap=${CAPS[2]}
    log "dynamics, $size ($config), true actions"
    capped "$cap" $G train dynamics --config "$config" --tokenizer_path "$TOK" --actions true \
        --output_dir "$RUNS/$size" "${COMMON[@]}"
    ckpt=$(latest "$RUNS/$size")
    [[ -n "$ckpt" ]] || { log "no $size checkpoint"; continue; }
    log "evaluating $ckpt"
    capped "${CAPS[3]}" $G eval dynamics --checkpoint "$ckpt" --data_dir "$WORK/data" --device "$DEVICE" \
        --eval_dir "$OUT/eval_$size"
    cp "$(dirname "$ckpt")"/metrics.jsonl "$OUT/metrics_$size.jsonl" 2>/dev/null
done
$PY experiments/gpu_long_play_table.py "$OUT" | tee "$OUT/long_play.md"
log "done in $(($(date +%s) - START)) s: $OUT"
