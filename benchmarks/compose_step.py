"""A compose training step's cost by batch kind, with and without `compose.script_vocab`, side by side.

    python -m benchmarks.compose_step runs/telugu
    python -m benchmarks.compose_step runs/telugu --rows 8 --repeats 3 --threads 2

One batch of the run's training utterances (the first `--rows`), its bridges loaded: forward + backward of
`SpeechModel.loss` (m_A's states computed once beforehand, as the stage caches them) for a batch of
transcripts, of translations, and of chained rows (transcript, marker, translation), each with the full
262k-way head and with transcripts scored over the script's characters only. Best of `--repeats` rounds
(these machines are shared and noisy); the ratio in the last column is the number to compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import torch

from speech_calm.infer import load
from speech_calm.speech.data import AudioStore, read_split
from speech_calm.speech.model import TOWER, SpeechModel


def step_seconds(speech: SpeechModel, outputs: dict, tasks: list[str], targets: list[str], repeats: int) -> float:
    """Best wall time of forward + backward of `speech.loss` on one batch."""
    best = float("inf")
    for _ in range(repeats):
        speech.model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        speech.loss(speech.model, outputs, tasks, targets).backward()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compose_step", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a trained run (encoder + compose stages)")
    p.add_argument("--rows", type=int, default=8, help="utterances in the batch (default 8, the recipe's)")
    p.add_argument("--repeats", type=int, default=3, help="rounds per configuration; the best is reported")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load(args.run_dir, device="cpu")
    cfg = model.recipe.compose
    if not cfg.char_targets:
        print("error: the run's recipe writes BPE transcripts (compose.char_targets: false); script_vocab needs "
              "character targets", file=sys.stderr)
        return 2
    utts = read_split(model.recipe.data.dirs, "train", [cfg.language])[: args.rows]
    audio, lens = AudioStore(cache_hours=0).batch(utts)
    with torch.no_grad():
        outputs = {TOWER: model.speech.tower(audio, lens)}
    rows = []
    for kind, chain in (("transcripts", False), ("translations", False), ("chained rows", True)):
        tasks = ["translate" if kind != "transcripts" else "transcribe"] * len(utts)
        seconds = []
        for closed in (False, True):
            speech = SpeechModel(model.speech.model, model.speech.tokenizer,
                                 replace(cfg, chain_translation=chain, script_vocab=closed))
            targets = [speech.training_target(t, u.text, u.translation) for t, u in zip(tasks, utts)]
            seconds.append(step_seconds(speech, outputs, tasks, targets, args.repeats))
        rows.append((kind, *seconds))
    print(f"\n{args.run_dir}: one batch of {len(utts)} utterances, forward + backward, {args.threads} threads, "
          f"best of {args.repeats}\n")
    print("| batch | full head (s) | script_vocab (s) | ratio |\n|---|---|---|---|")
    for kind, full, closed in rows:
        print(f"| {kind} | {full:.2f} | {closed:.2f} | {full / closed:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
