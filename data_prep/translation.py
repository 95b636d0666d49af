"""Telugu→English text data for the text path: sentence pairs and Telugu monolingual text, as JSONL.

Usage (see ``--help``)::

    python data_prep/translation.py --source synthetic --out data/text/telugu          # offline
    python data_prep/translation.py --source hf --out data/text/telugu                 # FLORES-200 + Samanantar
    python data_prep/translation.py --source local pairs.tsv --out data/text/telugu    # your own pairs

Sources:

* ``hf``: evaluation pairs from FLORES-200 (``--flores-repo``, default ``openlanguagedata/flores_plus``;
  configs ``tel_Telu`` and ``eng_Latn`` joined on ``id``; ``dev`` → dev, ``devtest`` → test), training pairs
  and monolingual Telugu from a parallel corpus (``--parallel-repo``, default ``ai4bharat/samanantar``,
  config ``te``: English ``src``, Telugu ``tgt``), streamed.  The Hub is checked first with a short timeout
  (and ``HF_HUB_OFFLINE`` is honoured): when it cannot be reached the command says why at once and falls back
  to ``synthetic`` (``--no-fallback`` makes that an error instead).
* ``local PATH``: a TSV (``telugu<TAB>english`` per line) or JSONL (``{"src", "tgt"}`` or ``{"te", "en"}``)
  of pairs, split by a hash of the Telugu side; ``--mono FILE`` adds Telugu lines (one per line).
* ``synthetic``: sentences from ``data_prep/sentences.py`` (the generator behind the synthetic speech
  corpus), each with its English; monolingual text is more sentences of the same generator.

Outputs (DESIGN.md "Data"; test and dev sentences never occur in train or in the monolingual text)::

    OUT/{train,dev,test}.jsonl   {"id", "src", "tgt", "src_lang": "tel_Telu", "tgt_lang": "eng_Latn"}
    OUT/mono.jsonl               {"text"}: Telugu monolingual text (m_A's training data)
    OUT/stats.json               source, counts, settings (written last)
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python data_prep/translation.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep.vaani import SourceUnavailable, with_timeout
from speech_calm.files import atomic_write
from speech_calm.speech.indic import script_fraction

__all__ = ["prepare", "synthetic_pairs", "local_pairs", "hf_pairs", "check_hub", "main"]

SRC_LANG, TGT_LANG = "tel_Telu", "eng_Latn"
FLORES_REPO = "openlanguagedata/flores_plus"
PARALLEL_REPO = "ai4bharat/samanantar"
HUB_TIMEOUT_S = 15.0
Pair = tuple[str, str]


def clean(text: str) -> str:
    """NFC, whitespace collapsed (sentences keep their punctuation: this is text, not an ASR target)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


# ------------------------------------------------------------------------------------------ sources


def synthetic_pairs(n_train: int, n_dev: int, n_test: int, n_mono: int, seed: int
                    ) -> tuple[dict[str, list[Pair]], list[str]]:
    """Template sentences: (splits of (Telugu, English) pairs, Telugu monolingual lines). Each split and the
    monolingual text come from their own stream of the generator; repeats across them are removed, test
    first (so test sentences are never trained on)."""
    from data_prep.sentences import generate_sentences

    def stream(offset: int, n: int) -> list[Pair]:
        out = []
        for s in generate_sentences("telugu", n, seed=seed * 10 + offset):
            out.append((clean(s.spoken), clean(s.translation or "")))
        return out

    seen: set[str] = set()
    splits: dict[str, list[Pair]] = {}
    for offset, (name, n) in enumerate((("test", n_test), ("dev", n_dev), ("train", n_train))):
        # draw 3x: the templates repeat sentences; keep the first n distinct unseen ones
        pairs = _distinct(stream(offset, 3 * n + 50), seen, n, unique=name != "train")
        splits[name] = pairs
    mono = [t for t, _ in stream(3, n_mono + 100) if t not in seen][:n_mono]
    return splits, mono


def _distinct(pairs: Iterable[Pair], seen: set[str], n: int, unique: bool) -> list[Pair]:
    out = []
    for src, tgt in pairs:
        if not src or not tgt or src in seen:
            continue
        if unique:
            seen.add(src)
        out.append((src, tgt))
        if len(out) == n:
            break
    return out


def _split_of(src: str, dev_share: float, test_share: float) -> str:
    h = int(hashlib.sha1(src.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_share else "dev" if h < test_share + dev_share else "train"


def _read_pairs_file(path: Path) -> Iterator[Pair]:
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    row = json.loads(line)
                    src, tgt = row.get("src", row.get("te")), row.get("tgt", row.get("en"))
                    if src is None or tgt is None:
                        raise ValueError(f"{path}:{n}: a pair needs src/tgt (or te/en)")
                    yield clean(src), clean(tgt)
    else:
        with path.open(encoding="utf-8", newline="") as f:
            for n, cols in enumerate(csv.reader(f, delimiter="\t"), 1):
                if not cols or not "".join(cols).strip():
                    continue
                if len(cols) < 2:
                    raise ValueError(f"{path}:{n}: expected telugu<TAB>english")
                yield clean(cols[0]), clean(cols[1])


def local_pairs(path: str | Path, mono: str | Path | None, dev_share: float = 0.05, test_share: float = 0.05
                ) -> tuple[dict[str, list[Pair]], list[str]]:
    """Pairs from a TSV/JSONL file, split by a hash of the Telugu side; monolingual lines from `mono`."""
    path = Path(path)
    if not path.is_file():
        raise SourceUnavailable(f"{path} does not exist; --source local needs a TSV or JSONL file of pairs")
    splits: dict[str, list[Pair]] = {"train": [], "dev": [], "test": []}
    seen: set[str] = set()
    for src, tgt in _read_pairs_file(path):
        if src and tgt and src not in seen:
            seen.add(src)
            splits[_split_of(src, dev_share, test_share)].append((src, tgt))
    held = {s for name in ("dev", "test") for s, _ in splits[name]}
    lines = [clean(x) for x in Path(mono).read_text(encoding="utf-8").splitlines()] if mono else []
    return splits, [t for t in lines if t and t not in held]


def check_hub(repo: str, timeout: float = HUB_TIMEOUT_S) -> None:
    """Raise `SourceUnavailable` at once (no retries, no hanging) unless the Hub answers for `repo`."""
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
           for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        raise SourceUnavailable("HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) is set, so the Hub is not asked")
    from huggingface_hub import HfApi

    try:
        with_timeout(lambda: HfApi().dataset_info(repo, timeout=timeout), timeout, "the Hugging Face Hub")
    except SourceUnavailable as e:
        raise SourceUnavailable(f"cannot reach the Hugging Face Hub for {repo}: {e}") from None
    except Exception as e:  # noqa: BLE001 - hub errors differ by version (gated, missing, network)
        raise SourceUnavailable(f"cannot read {repo} from the Hugging Face Hub ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}); gated datasets need their terms "
                                f"accepted and HF_TOKEN set") from None


def hf_pairs(n_train: int, n_mono: int, flores_repo: str = FLORES_REPO, parallel_repo: str = PARALLEL_REPO
             ) -> tuple[dict[str, list[Pair]], list[str]]:
    """FLORES-200 dev/devtest as dev/test; the first `n_train` pairs (and `n_mono` more Telugu lines) of the
    parallel corpus, streamed, without FLORES sentences."""
    from datasets import load_dataset

    check_hub(flores_repo)
    check_hub(parallel_repo)
    splits: dict[str, list[Pair]] = {}
    for ours, theirs in (("dev", "dev"), ("test", "devtest")):
        te = {r["id"]: r["text"] for r in load_dataset(flores_repo, SRC_LANG, split=theirs)}
        en = {r["id"]: r["text"] for r in load_dataset(flores_repo, TGT_LANG, split=theirs)}
        splits[ours] = [(clean(te[i]), clean(en[i])) for i in sorted(te) if i in en]
    held = {s for name in ("dev", "test") for s, _ in splits[name]}
    train: list[Pair] = []
    mono: list[str] = []
    for row in load_dataset(parallel_repo, "te", split="train", streaming=True):
        src, tgt = clean(row["tgt"]), clean(row["src"])  # Samanantar: src English, tgt Indic
        if not src or src in held or script_fraction(src, "telugu") < 0.8:
            continue
        if len(train) < n_train:
            train.append((src, tgt))
        elif len(mono) < n_mono:
            mono.append(src)
        else:
            break
    splits["train"] = train
    return splits, [t for t, _ in train] + mono


# ------------------------------------------------------------------------------------------ writing


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def prepare(source: str, out: str | Path, path: str | None = None, *, mono: str | None = None,
            n_train: int = 2000, n_dev: int = 100, n_test: int = 200, n_mono: int = 20000, seed: int = 0,
            fallback: bool = True, flores_repo: str = FLORES_REPO, parallel_repo: str = PARALLEL_REPO
            ) -> dict[str, Any]:
    """Write OUT/{train,dev,test}.jsonl, OUT/mono.jsonl and OUT/stats.json; returns the stats."""
    out = Path(out)
    used = source
    try:
        if source == "hf":
            splits, lines = hf_pairs(n_train, n_mono, flores_repo, parallel_repo)
        elif source == "local":
            if not path:
                raise SourceUnavailable("--source local needs PATH (a TSV or JSONL file of pairs)")
            splits, lines = local_pairs(path, mono)
        elif source == "synthetic":
            splits, lines = synthetic_pairs(n_train, n_dev, n_test, n_mono, seed)
        else:
            raise ValueError(f"unknown source {source!r}; use hf, local or synthetic")
    except SourceUnavailable as e:
        if source != "hf" or not fallback:
            raise
        print(f"warning: {e}\nfalling back to --source synthetic (offline template sentences)", file=sys.stderr)
        used = "synthetic (fallback: the Hub was unreachable)"
        splits, lines = synthetic_pairs(n_train, n_dev, n_test, n_mono, seed)
    for name, pairs in splits.items():
        if not pairs:
            raise ValueError(f"the {name} split is empty; give more data")
        _write_jsonl(out / f"{name}.jsonl", (
            {"id": f"{name}-{i:06d}", "src": s, "tgt": t, "src_lang": SRC_LANG, "tgt_lang": TGT_LANG}
            for i, (s, t) in enumerate(pairs)))
    _write_jsonl(out / "mono.jsonl", ({"text": t} for t in lines))
    stats = {"source": used, "pairs": {k: len(v) for k, v in splits.items()}, "mono": len(lines), "seed": seed}
    with atomic_write(out / "stats.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", choices=("hf", "local", "synthetic"), default="synthetic")
    p.add_argument("path", nargs="?", help="--source local: a TSV (telugu<TAB>english) or JSONL file of pairs")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--mono", help="--source local: a file of Telugu lines for m_A")
    p.add_argument("--train", type=int, default=2000, help="training pairs (synthetic, hf)")
    p.add_argument("--dev", type=int, default=100, help="dev pairs (synthetic)")
    p.add_argument("--test", type=int, default=200, help="test pairs (synthetic)")
    p.add_argument("--mono-lines", type=int, default=20000, help="Telugu monolingual lines (synthetic, hf)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flores-repo", default=FLORES_REPO)
    p.add_argument("--parallel-repo", default=PARALLEL_REPO)
    p.add_argument("--no-fallback", action="store_true", help="--source hf: fail instead of using synthetic data")
    a = p.parse_args(argv)
    if a.path and a.source != "local":
        print(f"error: PATH is only read with --source local (got {a.path!r})", file=sys.stderr)
        return 2
    try:
        stats = prepare(a.source, a.out, a.path, mono=a.mono, n_train=a.train, n_dev=a.dev, n_test=a.test,
                        n_mono=a.mono_lines, seed=a.seed, fallback=not a.no_fallback, flores_repo=a.flores_repo,
                        parallel_repo=a.parallel_repo)
    except (SourceUnavailable, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
