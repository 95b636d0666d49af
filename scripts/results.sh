#!/usr/bin/env bash
# make results: the README's results table from scratch, offline, each step printing its progress:
#   1. data: synthetic Vaani-style speech (scripts/data.sh, as make demo prepares it) and the festival voice
#   2. CALM, seed 0: the encoder stage (m_A, trained once) and the compose stage          -> $ROOT/calm_s0
#   3. CALM, seeds 1, 2, ...: the compose stage alone, on seed 0's m_A                    -> $ROOT/calm_sN
#   4. baselines on the same m_A, recipe and steps: the prefix projector (compose.bridge.type=prefix),
#      CALM trained on transcripts only (zero-shot translation) and the cascade's LoRA (stage cascade)
#   5. the table: python -m benchmarks.results_table (also the few-shot cascade, m_A and the anchor alone)
#      -> $ROOT/table.md (and table.json)
# Every step skips work already done (data prep and training resume; the table is rebuilt only when a run
# finished after it), so a rerun after a stop carries on.
#
#   bash scripts/results.sh                                     # what `make results` runs after `make install`
#   RESULTS_DIR=runs/quick RESULTS_OVERRIDES="encoder.train.max_steps=50 compose.train.max_steps=30 \
#       cascade.train.max_steps=30" RESULTS_LIMIT=20 bash scripts/results.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
RECIPE=${RESULTS_RECIPE:-recipes/telugu.yaml}
ROOT=${RESULTS_DIR:-runs/results}
SEEDS=${RESULTS_SEEDS:-0 1 2}              # compose seeds: the table reports their mean and range
OVERRIDES=${RESULTS_OVERRIDES:-}           # extra dotted.key=value overrides for every training run
LIMIT=${RESULTS_LIMIT:-}                   # score only the first N utterances of each test set (default: all)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1  # nothing is downloaded

START=$SECONDS
step() { printf '\n=== [%s] %s  (%d:%02d elapsed)\n' "$1" "$2" $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)); }
train() {  # RUN_NAME dotted.key=value...: one run of the recipe under $ROOT (complete stages are skipped)
    local name=$1
    shift
    # shellcheck disable=SC2086
    "$PY" -m speech_calm.train "$RECIPE" run_dir="$ROOT/$name" "$@" $OVERRIDES
}

step 1/5 "data for $RECIPE"
# shellcheck disable=SC2086
PY="$PY" bash scripts/data.sh "$RECIPE" $OVERRIDES

read -r -a seeds <<< "$SEEDS"
FIRST="calm_s${seeds[0]}"
M_A="$ROOT/$FIRST/encoder/model"  # every other run reads this m_A: the encoder trains once
step 2/5 "CALM, seed ${seeds[0]}: encoder and compose -> $ROOT/$FIRST"
train "$FIRST" seed="${seeds[0]}" "stages=[encoder, compose]"

step 3/5 "CALM, seeds ${seeds[*]:1}: compose on $M_A"
CALM=("$ROOT/$FIRST")
for seed in "${seeds[@]:1}"; do
    train "calm_s$seed" seed="$seed" "stages=[compose]" compose.tower.source="$M_A"
    CALM+=("$ROOT/calm_s$seed")
done

step 4/5 "baselines on $M_A: prefix projector, zero-shot translation, cascade LoRA"
train prefix seed="${seeds[0]}" "stages=[compose]" compose.tower.source="$M_A" compose.bridge.type=prefix
train zero_shot seed="${seeds[0]}" "stages=[compose]" compose.tower.source="$M_A" "compose.tasks=[transcribe]"
train cascade seed="${seeds[0]}" "stages=[cascade]" compose.tower.source="$M_A"

TABLE="$ROOT/table.md"
step 5/5 "the results table -> $TABLE"
if [ -f "$TABLE" ] && [ -z "$(find "$ROOT" -name done.json -newer "$TABLE")" ]; then
    echo "$TABLE is newer than every finished run; kept (delete it to score again)"
    cat "$TABLE"
else
    "$PY" -m benchmarks.results_table --calm "${CALM[@]}" --prefix "$ROOT/prefix" --zero-shot "$ROOT/zero_shot" \
        --cascade "$ROOT/cascade" --out "$TABLE" ${LIMIT:+--limit "$LIMIT"}
fi
echo
echo "command: make results   (bash scripts/results.sh: RECIPE=$RECIPE SEEDS=\"$SEEDS\"${OVERRIDES:+ OVERRIDES=\"$OVERRIDES\"}${LIMIT:+ LIMIT=$LIMIT})"
step done "results complete: $TABLE"
