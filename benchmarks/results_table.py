"""The speech path's results table (issue 17): every system on the same utterances, seen and unseen sentences
of the test split and the held-out voice.

    python -m benchmarks.results_table --calm runs/results/calm_s0 runs/results/calm_s1 runs/results/calm_s2 \\
        --prefix runs/results/prefix --zero-shot runs/results/zero_shot --cascade runs/results/cascade \\
        --out runs/results/table.md

Systems (rows), each scored by `speech_calm.speech.evaluate.scores` (CER of transcripts, chrF++ of
translations) on each test set (columns):

- m_A alone: greedy CTC decoding with the encoder stage's CTC head (no translation);
- the anchor alone: the task prompts with no audio (one answer per task for every utterance);
- cascade, few-shot: m_A's CTC transcript → the frozen anchor with `cascade.shots` fixed training examples;
- cascade, LoRA: the same transcripts → the anchor with the `cascade` stage's adapters (parameter-matched);
- prefix projector: a compose run with `compose.bridge.type=prefix` (the same targets, vocabulary, chaining,
  steps; as many parameters as the bridges);
- CALM, zero-shot translation: a compose run trained on transcripts only (`compose.tasks=[transcribe]`),
  its English the anchor's own continuation after the chained prompt's English marker (real Vaani has no
  English to train on);
- CALM: the compose runs given (one per seed): the mean and the range (min–max) over them.

Test sets: the first CALM run's first data directory's `test.jsonl`, split into the sentences its training
manifests hold (seen) and the others (unseen), and `test_festival.jsonl` beside it when there is one (the
same sentences in a voice no training set has). Every run must read the same m_A (a note says when not).
Writes the Markdown table to --out and everything (per-set metrics of every run) to the same name .json.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.speech_table import anchor_alone, ctc_alone
from speech_calm.evaluate import training_texts
from speech_calm.files import atomic_write, write_json
from speech_calm.infer import load
from speech_calm.speech.data import Utterance, read_manifest
from speech_calm.speech.evaluate import evaluate, scores, subset_scores
from speech_calm.speech.indic import language_script
from speech_calm.speech.transcribe import Transcriber
from speech_calm.training.recipe import load_recipe, tower_source
from speech_calm.training.stages.cascade import cascade_model, translate

# (test set, subset) → column label; the held-out voice is one set, scored whole
CELLS = (("test", "seen", "seen"), ("test", "unseen", "unseen"), ("voice", "all", "held-out voice"))
METRICS = (("cer", "CER"), ("chrf", "chrF++"))
TASKS = ["transcribe", "translate"]

Items = dict[str, list[dict[str, Any]]]  # test set → scored items


def test_sets(data_dir: Path, language: str, limit: int | None) -> dict[str, list[Utterance]]:
    """{"test": test.jsonl, "voice": test_festival.jsonl (when present)}, `language` only, first `limit` each."""
    sets = {"test": data_dir / "test.jsonl", "voice": data_dir / "test_festival.jsonl"}
    return {name: [u for u in read_manifest(path) if u.language == language][:limit]
            for name, path in sets.items() if path.is_file()}


def cells(items: Items, train: set[str] | None, script: str) -> dict[str, dict[str, float | None]]:
    """{column label: {metric: value}} of one system's items."""
    out: dict[str, dict[str, float | None]] = {}
    for name, subset, label in CELLS:
        group = items.get(name)
        if not group:
            continue
        if subset == "all":
            metrics = scores(group, script)
        elif train is None:
            continue
        else:
            metrics = subset_scores(group, train, script)[subset]
        out[label] = {k: _finite(metrics.get(k)) for k, _ in METRICS}
    return out


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _items(utts: Sequence[Utterance], hyps: Sequence[str | None], translations: Sequence[str | None]) -> list[dict]:
    return [{"id": u.id, "duration": u.duration, "reference": u.text, "hypothesis": h,
             "reference_translation": u.translation, "translation": t}
            for u, h, t in zip(utts, hyps, translations)]


def decoded(model: Transcriber, sets: dict[str, list[Utterance]], batch_size: int) -> Items:
    """A run's transcripts and translations of every test set (`speech_calm.speech.evaluate`)."""
    out = {}
    for name, utts in sets.items():
        report = evaluate(model, utts, TASKS, batch_size, progress=True)
        if report["failed"]:
            raise ValueError(f"{model.run_dir}: {len(report['failed'])} unreadable utterances in {name}")
        out[name] = report["items"]
    return out


def _trained(model: Transcriber) -> int:
    return sum(p.numel() for _, p in model.speech.model.trainable_parameters())


def summary(runs: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per column and metric: the mean, min and max over runs (seeds)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for _, _, label in CELLS:
        for key, _ in METRICS:
            values = [r[label][key] for r in runs if label in r and r[label][key] is not None]
            if values:
                out.setdefault(label, {})[key] = {"mean": statistics.fmean(values), "min": min(values),
                                                  "max": max(values), "runs": len(values)}
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    """One row per system; CALM's cells over several seeds read `mean (min–max)`."""
    labels = [label for _, _, label in CELLS if any(label in r["cells"] for r in rows)]
    head = [f"{label} {name}" for label in labels for _, name in METRICS]
    lines = ["| system | trained parameters | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]

    def cell(v: Any) -> str:
        if isinstance(v, dict):
            return f"{v['mean']:.1f}" + (f" ({v['min']:.1f}–{v['max']:.1f})" if v["runs"] > 1 else "")
        return "—" if v is None else f"{v:.1f}"

    for r in rows:
        n = r["trained_parameters"]
        params = "—" if n is None else ("0" if n == 0 else f"{n / 1e6:.2f} M")
        values = [cell(r["cells"].get(label, {}).get(key)) for label in labels for key, _ in METRICS]
        lines.append(f"| {r['system']} | {params} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.results_table", description=__doc__.split("\n\n")[0])
    p.add_argument("--calm", nargs="+", required=True, metavar="RUN", help="compose runs, one per seed")
    p.add_argument("--prefix", default=None, metavar="RUN", help="a run with compose.bridge.type=prefix")
    p.add_argument("--zero-shot", default=None, metavar="RUN", help="a run with compose.tasks=[transcribe]")
    p.add_argument("--cascade", default=None, metavar="RUN",
                   help="a run with a finished `cascade` stage (the adapted cascade; the few-shot one needs none)")
    p.add_argument("--data-dir", default=None, help="default: the first CALM run's first data directory")
    p.add_argument("--limit", type=int, default=None, help="only the first N utterances of each test set")
    p.add_argument("--batch-size", type=int, default=8, help="utterances decoded together (default 8)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--out", default=None, help="the Markdown table (default: RUN/eval/results.md of the first CALM run)")
    args = p.parse_args(argv)
    with torch.no_grad():  # a block, not set_grad_enabled: main() also runs inside other programs (tests)
        try:
            return _run(args)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2


def _run(args: argparse.Namespace) -> int:
    first = load_recipe(Path(args.calm[0]) / "recipe.yaml", trained=True)
    language, script = first.compose.language, language_script(first.compose.language)
    data_dir = Path(args.data_dir or first.data.dirs[0])
    sets = test_sets(data_dir, language, args.limit)
    if not sets.get("test"):
        raise ValueError(f"no {language} utterances in {data_dir / 'test.jsonl'}")
    train, train_note = training_texts(first.data.dirs)
    if train is None:
        print(f"note: {train_note}; no seen/unseen split", file=sys.stderr)
    m_a = tower_source(first, Path(args.calm[0]))
    rows: list[dict[str, Any]] = []

    def add(system: str, params: int | None, items: Items, **extra: Any) -> None:
        rows.append({"system": system, "trained_parameters": params, "cells": cells(items, train, script), **extra})
        print(f"[results] {system}: {rows[-1]['cells']}", file=sys.stderr, flush=True)

    # m_A alone; its greedy CTC transcripts are also what both cascades translate
    ctc = {name: ctc_alone(m_a, utts) for name, utts in sets.items()}
    transcripts = {name: [i["hypothesis"] for i in items] for name, items in ctc.items()}
    add("m_A alone (CTC, greedy)", None, {n: _items(sets[n], transcripts[n], [None] * len(sets[n])) for n in sets})

    calm0 = load(args.calm[0], device=args.device)
    add("anchor alone (no audio)", 0, {n: [{**i, "duration": u.duration} for u, i in
                                           zip(utts, anchor_alone(calm0, utts))] for n, utts in sets.items()})
    del calm0

    def cascade(label: str, adapted: bool, run_dir: Path) -> None:
        recipe = load_recipe(run_dir / "recipe.yaml", trained=True) if adapted else first
        tm, shots, info = cascade_model(recipe, run_dir, adapted, args.device)
        said = {n: translate(tm, recipe, transcripts[n], shots) for n in sets}
        add(label, info["trainable"], {n: _items(sets[n], transcripts[n], said[n]) for n in sets},
            rank=info.get("rank"), bridge_parameters=info.get("bridge_parameters"))

    cascade(f"cascade, few-shot ({first.cascade.shots} examples)", False, Path(args.calm[0]))
    if args.cascade:
        cascade("cascade, LoRA (matched parameters)", True, Path(args.cascade))

    def composed(label: str, run_dir: str, check: Callable[[Transcriber], str | None]) -> dict[str, Any]:
        model = load(run_dir, device=args.device)
        problem = check(model)
        if problem:
            raise ValueError(f"{run_dir}: {problem}")
        if str(Path(tower_source(model.recipe, Path(run_dir))).resolve()) != str(Path(m_a).resolve()):
            print(f"note: {run_dir} reads m_A from {tower_source(model.recipe, Path(run_dir))}, not {m_a}",
                  file=sys.stderr)
        row = {"system": label, "trained_parameters": _trained(model),
               "cells": cells(decoded(model, sets, args.batch_size), train, script), "run_dir": run_dir}
        print(f"[results] {label} ({run_dir}): {row['cells']}", file=sys.stderr, flush=True)
        return row

    if args.prefix:
        rows.append(composed("prefix projector (matched parameters)", args.prefix, lambda m: None
                             if m.recipe.compose.bridge.type == "prefix" else "not a compose.bridge.type=prefix run"))
    if args.zero_shot:
        rows.append(composed("CALM, zero-shot translation (trained on transcripts)", args.zero_shot, lambda m: None
                             if m.speech.zero_shot_translation else
                             "not a chained run trained on transcripts only (compose.tasks=[transcribe])"))
    seeds = [composed("CALM", run, lambda m: None if m.recipe.compose.bridge.type == "cross_attention"
                      and "translate" in m.recipe.compose.tasks else "not a CALM run trained on both tasks")
             for run in args.calm]
    label = f"CALM (mean, range over {len(seeds)} seeds)" if len(seeds) > 1 else "CALM"
    rows.append({"system": label, "trained_parameters": seeds[0]["trained_parameters"],
                 "cells": summary([s["cells"] for s in seeds]), "seeds": seeds})

    sizes = {n: len(u) for n, u in sets.items()}
    text = markdown(rows)
    out = Path(args.out or Path(args.calm[0]) / "eval" / "results.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        tmp.write_text(f"{text}\n", encoding="utf-8")
    write_json(out.with_suffix(".json"), {"data_dir": str(data_dir), "utterances": sizes, "m_a": m_a,
                                          "train_manifests": train_note, "rows": rows})
    print(f"\n{', '.join(f'{n} {s}' for n, s in sizes.items())} {language} utterances from {data_dir}\n")
    print(text)
    print(f"\ntable: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
