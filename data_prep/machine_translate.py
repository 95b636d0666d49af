"""python data_prep/machine_translate.py DATA_DIR --model SOURCE: English for a speech corpus that has none.

Real Vaani has transcripts but no English, so the compose stage's translate task would train on nothing.
This step fills the `translation` of each manifest row (train/dev/test.jsonl in DATA_DIR) by machine
translation of its transcript, and marks the row `"translation_source": "machine:SOURCE"` (human translations
are kept unless --overwrite):

    python data_prep/machine_translate.py data/vaani/telugu_real --model facebook/nllb-200-distilled-600M \\
        --src-lang tel_Telu --tgt-lang eng_Latn --batch-size 64          # a seq2seq model (NLLB-200 style)
    python data_prep/machine_translate.py data/vaani/telugu_real --model sarvamai/sarvam-1   # a causal LM, by prompt

SOURCE is a hub id, a local directory, a .gguf file or `python:MODULE` (as for towers). An encoder-decoder
model translates directly (`--src-lang`/`--tgt-lang` set NLLB-style language codes when its tokenizer has them);
a causal LM continues `--prompt` greedily up to the end of the line. Batched, bf16 on a GPU, fp32 on a CPU.
Resumable: finished batches are kept in DATA_DIR/_machine_translation/SPLIT.jsonl until the manifest is
rewritten (atomically) with them, so a rerun after a kill goes on where it stopped, and a rerun after the end
changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python data_prep/machine_translate.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speech_calm.files import atomic_write

SPLITS = ("train", "dev", "test")
WORK_DIR = "_machine_translation"
PROMPT = "Translate Telugu to English.\nTelugu: {text}\nEnglish:"


class Translator:
    """A translation model from `source`: `translator(texts) -> English texts`, in batches of the caller's size.

    src_lang / tgt_lang: language codes of an NLLB-style tokenizer (`tel_Telu`, `eng_Latn`), used when the
    tokenizer knows them. prompt: for a causal LM, with `{text}` where the transcript goes.
    """

    def __init__(self, source: str, device: str = "auto", dtype: str = "auto", src_lang: str | None = None,
                 tgt_lang: str | None = None, prompt: str = PROMPT, max_new_tokens: int = 128,
                 trust_remote_code: bool = False) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        from speech_calm.towers.load import dequantized_gguf, resolve_dtype, resolve_source

        where = resolve_source(source)
        if where.endswith(".gguf"):
            where = str(dequantized_gguf(where))
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)
        config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        self.tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
        auto = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.model = auto.from_pretrained(where, dtype=resolve_dtype(dtype, self.device),
                                          trust_remote_code=trust_remote_code).to(self.device).eval()
        if "{text}" not in prompt:
            raise ValueError(f"the prompt must hold {{text}} where the transcript goes, got {prompt!r}")
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        vocab = self.tokenizer.get_vocab()
        if src_lang and hasattr(self.tokenizer, "src_lang"):
            self.tokenizer.src_lang = src_lang
        self.forced_bos = vocab.get(tgt_lang) if tgt_lang else None
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not self.seq2seq:
            self.tokenizer.padding_side = "left"  # generation continues every row at its last column

    def __call__(self, texts: Sequence[str]) -> list[str]:
        import torch

        inputs = texts if self.seq2seq else [self.prompt.format(text=t) for t in texts]
        batch = self.tokenizer(list(inputs), return_tensors="pt", padding=True).to(self.device)
        extra = {"forced_bos_token_id": self.forced_bos} if self.forced_bos is not None else {}
        with torch.no_grad():
            out = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=self.tokenizer.pad_token_id, **extra)
        if not self.seq2seq:
            out = out[:, batch["input_ids"].shape[1]:]  # the continuation only
        said = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [s.strip() if self.seq2seq else s.strip().split("\n")[0].strip() for s in said]


def _missing(row: dict[str, Any]) -> bool:
    """No translation yet: none given by a person, none made by a model (an empty one included)."""
    return not row.get("translation") and not row.get("translation_source")


def translate_manifest(path: Path, translate: Callable[[Sequence[str]], list[str]], source: str,
                       batch_size: int = 32, overwrite: bool = False) -> dict[str, int]:
    """Fill `translation` in the manifest at `path` (JSONL, rewritten atomically); returns counts."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    work = path.parent / WORK_DIR / path.name
    done: dict[str, str] = {}
    if work.is_file():  # batches finished before a stop
        done = {r["id"]: r["translation"] for r in map(json.loads, work.read_text(encoding="utf-8").splitlines())}
    todo = [r for r in rows if (overwrite or _missing(r)) and r["id"] not in done]
    work.parent.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        english = translate([r["text"] for r in chunk])
        with work.open("a", encoding="utf-8") as f:  # one line per row: a kill loses at most this batch
            f.write("".join(json.dumps({"id": r["id"], "translation": t}, ensure_ascii=False) + "\n"
                            for r, t in zip(chunk, english)))
        done.update({r["id"]: t for r, t in zip(chunk, english)})
        print(f"{path.name}: {min(start + batch_size, len(todo))}/{len(todo)} translated", file=sys.stderr)
    changed = 0
    for r in rows:
        if r["id"] in done and (overwrite or _missing(r)):
            r["translation"], r["translation_source"] = done[r["id"]], f"machine:{source}"
            changed += 1
    if changed:
        with atomic_write(path) as tmp:
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    work.unlink(missing_ok=True)
    return {"rows": len(rows), "translated": changed, "kept": len(rows) - changed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python data_prep/machine_translate.py",
                                description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                epilog="example: python data_prep/machine_translate.py data/vaani/telugu_real "
                                       "--model facebook/nllb-200-distilled-600M --src-lang tel_Telu "
                                       "--tgt-lang eng_Latn")
    p.add_argument("data_dir", type=Path, help="a directory of train/dev/test.jsonl manifests (data_prep/vaani.py)")
    p.add_argument("--model", required=True, help="translation model: hub id, local dir, .gguf or python:MODULE")
    p.add_argument("--splits", nargs="+", default=list(SPLITS), help="manifests to fill (default: all three)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16")
    p.add_argument("--src-lang", default=None, help="source language code of an NLLB-style tokenizer (tel_Telu)")
    p.add_argument("--tgt-lang", default=None, help="target language code (eng_Latn)")
    p.add_argument("--prompt", default=PROMPT, help="a causal LM's prompt, with {text} for the transcript")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--overwrite", action="store_true", help="translate rows that already have a translation too")
    p.add_argument("--trust-remote-code", action="store_true", help="run the model repository's own code")
    args = p.parse_args(argv)
    manifests = [args.data_dir / f"{s}.jsonl" for s in args.splits]
    missing = [str(m) for m in manifests if not m.is_file()]
    if missing or args.batch_size < 1:
        print(f"error: {'no manifest ' + ', '.join(missing) if missing else '--batch-size must be >= 1'}; "
              f"prepare the corpus with python data_prep/vaani.py first", file=sys.stderr)
        return 2
    try:
        translator = Translator(args.model, args.device, args.dtype, args.src_lang, args.tgt_lang, args.prompt,
                                args.max_new_tokens, args.trust_remote_code)
    except (OSError, ValueError) as e:
        print(f"error: {args.model}: {e}", file=sys.stderr)
        return 2
    for m in manifests:
        stats = translate_manifest(m, translator, args.model, args.batch_size, args.overwrite)
        print(f"{m}: {stats['translated']} rows translated, {stats['kept']} kept", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
