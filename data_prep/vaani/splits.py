"""Train/dev/test splits: official splits kept, the rest speaker-disjoint (~80/10/10 by duration),
and per-split statistics."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

SPLITS = ("train", "dev", "test")
SPLIT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}


def assign_splits(records: list[dict[str, Any]], seed: int) -> dict[str, str]:
    """id -> split.  Official splits are kept; the rest is split by speaker, ~80/10/10 by duration.

    Works per language.  Speakers are shuffled with ``seed``; the first goes to test, the second to
    dev (so neither is empty when there are 3+ speakers), then each speaker goes to the split that is
    furthest below its share of the language's duration.  A speaker with an official split keeps all
    its utterances there.  Records without a speaker are split per utterance.
    """
    out: dict[str, str] = {}
    by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_lang[r["language"]].append(r)
    for language, recs in sorted(by_lang.items()):
        speaker_split: dict[str, str] = {}
        for r in recs:
            if r["_split"] and r["speaker"] is not None:
                speaker_split.setdefault(r["speaker"], r["_split"])
        groups: dict[str, float] = defaultdict(float)
        for r in recs:
            if r["_split"]:
                out[r["id"]] = r["_split"]
            elif r["speaker"] is not None and r["speaker"] in speaker_split:
                out[r["id"]] = speaker_split[r["speaker"]]
            else:
                groups[_group_key(r)] += r["duration"]
        if not groups:
            continue
        order = sorted(groups)
        random.Random(f"split/{seed}/{language}").shuffle(order)
        total = sum(groups.values())
        have = {s: 0.0 for s in SPLITS}
        group_split: dict[str, str] = {}
        for i, g in enumerate(order):
            if len(order) >= 3 and i < 2:
                split = ("test", "dev")[i]
            else:
                split = max(SPLITS, key=lambda s: (SPLIT_FRACTIONS[s] * total - have[s], -SPLITS.index(s)))
            group_split[g] = split
            have[split] += groups[g]
        for r in recs:
            if r["id"] not in out:
                out[r["id"]] = group_split[_group_key(r)]
    return out


def _group_key(record: dict[str, Any]) -> str:
    return f"spk:{record['speaker']}" if record["speaker"] is not None else f"utt:{record['id']}"


def _split_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    def summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "hours": round(sum(r["duration"] for r in rs) / 3600.0, 4),
            "utterances": len(rs),
            "speakers": len({r["speaker"] for r in rs if r["speaker"] is not None}),
        }

    out = summary(records)
    langs = sorted({r["language"] for r in records})
    out["per_language"] = {lang: summary([r for r in records if r["language"] == lang]) for lang in langs}
    return out


def _split_methods(records: list[dict[str, Any]]) -> dict[str, str]:
    methods: dict[str, set[str]] = defaultdict(set)
    for r in records:
        methods[r["language"]].add("official" if r["_split"] else "speaker")
    return {lang: "+".join(sorted(m)) for lang, m in sorted(methods.items())}
