#!/usr/bin/env bash
# The data a recipe reads, prepared offline: synthetic Vaani-style speech for every directory in its data.dirs
# (data_prep/vaani.py --source synthetic), and the held-out festival voice when festival can be installed.
# A directory that is already prepared is skipped. Used by scripts/demo.sh and scripts/results.sh.
#
#   bash scripts/data.sh recipes/telugu.yaml [dotted.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OTHER_HOURS=${OTHER_HOURS:-0.2}  # hours per extra language (m_A's multilingual data)
RECIPE=$1
shift

bash scripts/install_festival.sh  # optional: the held-out voice test set (silently skipped when not possible)
# one line per data directory of the recipe: DIR LANGUAGE...  (a directory named after a language holds that
# language; any other directory holds the recipe's remaining languages)
"$PY" - "$RECIPE" "$@" > "${TMPDIR:-/tmp}/speech_calm_data_dirs.$$" <<'PY'
import sys
from pathlib import Path
from speech_calm.training.recipe import load_recipe
recipe = load_recipe(sys.argv[1], sys.argv[2:])
dirs, languages = recipe.data.dirs, [l.lower() for l in recipe.data.languages]
named = {Path(d).name.lower() for d in dirs}
for d in dirs:
    own = Path(d).name.lower()
    print(d, *([own] if own in languages else [l for l in languages if l not in named] or languages))
PY
while read -r dir langs; do
    if [ -f "$dir/stats.json" ] && [ -f "$dir/test.jsonl" ]; then
        echo "$dir: already prepared ($dir/stats.json); skipped"
    else
        # the main language's directory gets the default size (1 h); the others, there only to make m_A
        # multilingual, OTHER_HOURS per language
        size=""
        case "$langs" in *" "*) size="--hours $OTHER_HOURS" ;; esac
        # shellcheck disable=SC2086
        "$PY" data_prep/vaani.py --source synthetic --language $langs --out "$dir" --tts auto $size < /dev/null
    fi
done < "${TMPDIR:-/tmp}/speech_calm_data_dirs.$$"
rm -f "${TMPDIR:-/tmp}/speech_calm_data_dirs.$$"
