#!/usr/bin/env bash
# make demo: everything offline, on this CPU, in about 25 minutes, each step printing its progress:
#   1. synthetic Vaani-style speech for every data directory the recipe reads (data_prep/vaani.py)
#   2. training: python -m speech_calm.train recipes/telugu.yaml (encoder, then CALM bridges)
#   3. evaluation on the held-out test speakers and sentences (CER, WER, script fidelity, BLEU, chrF++), and on
#      the same sentences in festival's voice, which m_A never heard (when festival could be installed)
#   4. a long held-out recording made by joining test clips with pauses
#   5. python -m speech_calm.infer on it: transcript, translation and SRT subtitles
# Every step skips work already done (data prep and training resume), so a rerun after a stop carries on.
#
#   bash scripts/demo.sh                                        # what `make demo` runs after `make install`
#   DEMO_RUN=runs/quick DEMO_OVERRIDES="encoder.train.max_steps=50 compose.train.max_steps=30" bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
RECIPE=${DEMO_RECIPE:-recipes/telugu.yaml}
RUN=${DEMO_RUN:-runs/telugu}
OVERRIDES=${DEMO_OVERRIDES:-}              # extra dotted.key=value overrides for training
LONG_SECONDS=${DEMO_LONG_SECONDS:-120}      # length of the held-out long recording
EVAL_LIMIT=${DEMO_EVAL_LIMIT:-}             # evaluate only the first N test utterances (default: all)
OTHER_HOURS=${DEMO_OTHER_HOURS:-0.2}        # hours per extra language (m_A's multilingual data)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1  # nothing is downloaded

START=$SECONDS
step() { printf '\n=== [%s] %s  (%d:%02d elapsed)\n' "$1" "$2" $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)); }

step 1/5 "data: synthetic Vaani-style speech for $RECIPE"
# shellcheck disable=SC2086
PY="$PY" OTHER_HOURS="$OTHER_HOURS" bash scripts/data.sh "$RECIPE" $OVERRIDES
# shellcheck disable=SC2086
TEST=$("$PY" -c 'import sys; from speech_calm.training.recipe import load_recipe
print(load_recipe(sys.argv[1], sys.argv[2:]).data.dirs[0])' "$RECIPE" $OVERRIDES)/test.jsonl

step 2/5 "train: $RECIPE -> $RUN (complete stages are skipped, a stopped stage resumes)"
# shellcheck disable=SC2086
"$PY" -m speech_calm.train "$RECIPE" run_dir="$RUN" $OVERRIDES

step 3/5 "evaluate on the held-out test speakers and sentences: $TEST"
"$PY" -m speech_calm.evaluate "$RUN" "$TEST" ${EVAL_LIMIT:+--limit "$EVAL_LIMIT"}
VOICE_TEST="$(dirname "$TEST")/test_festival.jsonl"
if [ -f "$VOICE_TEST" ]; then
    echo; echo "the same test sentences in festival's NSK voice (never in training): $VOICE_TEST"
    "$PY" -m speech_calm.evaluate "$RUN" "$VOICE_TEST" ${EVAL_LIMIT:+--limit "$EVAL_LIMIT"}
fi

LONG="$RUN/demo/long_test.flac"
step 4/5 "a held-out long recording: test clips joined with pauses -> $LONG"
if [ -f "$LONG" ]; then
    echo "$LONG exists; skipped"
else
    "$PY" scripts/make_long_audio.py "$TEST" --out "$LONG" --seconds "$LONG_SECONDS"
fi

step 5/5 "transcribe and translate it: python -m speech_calm.infer $RUN $LONG --task both --format txt srt"
"$PY" -m speech_calm.infer "$RUN" "$LONG" --task both --format txt srt --out "$RUN/demo"
echo
echo "reference subtitles of the same recording: $RUN/demo/long_test.ref.srt"
echo "files: $RUN/demo/long_test.txt, $RUN/demo/long_test.srt; evaluation report: $RUN/eval/test.json"
step done "demo complete"
