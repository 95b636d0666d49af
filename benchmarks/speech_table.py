"""The speech path's results table: CALM beside m_A alone (CTC), the prefix baseline and the anchor alone.

    python -m benchmarks.speech_table runs/telugu --prefix runs/telugu_prefix
    python -m benchmarks.speech_table runs/telugu --manifest data/vaani/telugu/test.jsonl --limit 100

Every system is scored on the same utterances with `speech_calm.evaluate.scores` (CER, WER, script fidelity
of transcripts; BLEU, chrF++ of translations):

- m_A alone: the encoder stage's model with its CTC head, greedy CTC decoding (it has no translation);
- the anchor alone: the same prompts with no audio (one answer per task, the same for every utterance);
- prefix: a run trained with `compose.bridge.type=prefix` (a projector with as many parameters as the bridges);
- CALM: the run's bridges.

It also checks that composition leaves the anchor unchanged: the perplexity of a fixed English text
(`speech_calm.text.translation.ENGLISH_TEXT`) under the anchor alone and under the composed model with no audio.
Writes RUN_DIR/eval/table.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from speech_calm.core.batch import chunks
from speech_calm.files import write_json
from speech_calm.infer import load
from speech_calm.speech.data import AudioStore, Utterance, read_manifest
from speech_calm.speech.evaluate import evaluate, scores
from speech_calm.speech.indic import language_script
from speech_calm.speech.transcribe import Transcriber
from speech_calm.text.translation import english_text
from speech_calm.towers.ctc import load_ctc_model
from speech_calm.training.recipe import tower_source

COLUMNS = (("cer", "CER %"), ("wer", "WER %"), ("script_fidelity", "script %"), ("bleu", "BLEU"),
           ("chrf", "chrF++"))


def ctc_alone(directory: str, utts: Sequence[Utterance], batch_size: int = 16) -> list[dict[str, Any]]:
    """m_A's own transcripts: greedy CTC decoding of each utterance (no translation)."""
    model = load_ctc_model(directory, "cpu")
    store = AudioStore(cache_hours=0)
    items = []
    for group in tqdm(list(chunks(list(utts), batch_size)), desc="m_A (CTC)", leave=False):
        audio, lens = store.batch(group)
        with torch.no_grad():
            hyps = model.greedy_decode(audio, lens, [language_script(u.language) for u in group])
        items += [{"reference": u.text, "hypothesis": h} for u, h in zip(group, hyps)]
    return items


def anchor_alone(model: Transcriber, utts: Sequence[Utterance]) -> list[dict[str, Any]]:
    """What the anchor writes for each task's prompt without audio, scored against every utterance."""
    said = {task: model.speech.generate(task, batch_size=1)[0] for task in ("transcribe", "translate")}
    return [{"reference": u.text, "hypothesis": said["transcribe"], "reference_translation": u.translation,
             "translation": said["translate"]} for u in utts]


@torch.no_grad()
def perplexity(module: nn.Module, tokenizer: Any, sentences: Sequence[str]) -> float:
    """exp(mean NLL per predicted token) of `sentences`, each read alone after <bos>; `module` is the anchor or
    the composition (called with no audio)."""
    total, count = 0.0, 0
    for sentence in sentences:
        ids = torch.tensor([tokenizer(sentence, add_special_tokens=True)["input_ids"]])
        logits = module(input_ids=ids).logits.float()  # (1, T, V)
        nll = nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
        total, count = total + float(nll), count + ids.shape[1] - 1
    return math.exp(total / max(1, count))


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per system."""
    def cell(v: Any) -> str:
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"

    lines = ["| system | trained parameters | " + " | ".join(c for _, c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for r in rows:
        params = "—" if r["trained_parameters"] is None else f"{r['trained_parameters'] / 1e6:.2f} M"
        lines.append(f"| {r['system']} | {params} | " + " | ".join(cell(r["metrics"].get(k)) for k, _ in COLUMNS)
                     + " |")
    return "\n".join(lines)


def _trained(model: Transcriber) -> int:
    return sum(p.numel() for _, p in model.speech.model.trainable_parameters())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speech_table", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a CALM run (encoder + compose stages trained)")
    p.add_argument("--prefix", default=None, help="a run of the same recipe with compose.bridge.type=prefix")
    p.add_argument("--manifest", default=None, help="default: the test split of the run's first data directory")
    p.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    p.add_argument("--batch-size", type=int, default=8, help="utterances decoded together (default 8)")
    args = p.parse_args(argv)
    with torch.no_grad():  # a block, not set_grad_enabled: main() also runs inside other programs (tests)
        return _run(args)


def _run(args: argparse.Namespace) -> int:

    calm = load(args.run_dir, device="cpu")
    manifest = args.manifest or str(Path(calm.recipe.data.dirs[0]) / "test.jsonl")
    utts = [u for u in read_manifest(manifest) if u.language == calm.language][: args.limit]
    if not utts:
        print(f"error: no {calm.language} utterances in {manifest}", file=sys.stderr)
        return 2
    script = language_script(calm.language)
    tasks = list(calm.recipe.compose.tasks)
    rows = [
        {"system": "m_A alone (CTC, greedy)", "trained_parameters": None,
         "metrics": scores(ctc_alone(tower_source(calm.recipe, Path(args.run_dir)), utts), script)},
        {"system": "anchor alone (no audio)", "trained_parameters": 0,
         "metrics": scores(anchor_alone(calm, utts), script)},
    ]
    if args.prefix:
        prefix = load(args.prefix, device="cpu")
        if prefix.recipe.compose.bridge.type != "prefix":
            print(f"error: --prefix {args.prefix} was trained with compose.bridge.type="
                  f"{prefix.recipe.compose.bridge.type}; give a run of compose.bridge.type=prefix", file=sys.stderr)
            return 2
        report = evaluate(prefix, utts, tasks, batch_size=args.batch_size, progress=True)
        rows.append({"system": "prefix projector (SLAM-ASR style)", "trained_parameters": _trained(prefix),
                     "metrics": report["metrics"]})
        del prefix
    report = evaluate(calm, utts, tasks, batch_size=args.batch_size, progress=True)
    rows.append({"system": "CALM (cross-attention bridges)", "trained_parameters": _trained(calm),
                 "metrics": report["metrics"]})

    sentences = english_text()
    tokenizer = calm.speech.tokenizer
    ppl = {"anchor": perplexity(calm.speech.model.anchor, tokenizer, sentences),
           "composed_without_audio": perplexity(calm.speech.model, tokenizer, sentences)}
    out = {"manifest": manifest, "utterances": len(utts), "rows": rows, "english_perplexity": ppl}
    write_json(Path(args.run_dir) / "eval" / "table.json", out)
    print(f"\n{len(utts)} {calm.language} utterances from {manifest}\n")
    print(table(rows))
    print(f"\nEnglish perplexity ({len(sentences)} sentences): anchor {ppl['anchor']:.3f}, "
          f"composed model without audio {ppl['composed_without_audio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
