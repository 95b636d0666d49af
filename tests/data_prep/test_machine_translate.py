"""data_prep/machine_translate.py: English for a corpus that has none, by a seq2seq model or a causal LM
(tiny random ones here), marked as machine-made, resumable and idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from data_prep.machine_translate import WORK_DIR, main
from tests import tiny


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """The tiny corpus without English, but for one human translation in test.jsonl."""
    tiny.write_corpus(str(tmp_path / "data"), n_train=6, n_dev=2, n_test=2)
    for split in ("train", "dev", "test"):
        path = tmp_path / "data" / f"{split}.jsonl"
        items = rows(path)
        for k, r in enumerate(items):
            if not (split == "test" and k == 0):
                del r["translation"]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random encoder-decoder model with its tokenizer."""
    where = tmp_path_factory.mktemp("t5")
    tok = tiny.tokenizer(["అమ్మ నీరు పాలు ఇల్లు రాము", "mother water milk house Ramu and"])
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, pad_token_id=0,
        eos_token_id=2, decoder_start_token_id=0))
    model.save_pretrained(where)
    tok.save_pretrained(where)
    return where


def test_fills_every_missing_translation_and_marks_it(corpus: Path, seq2seq: Path) -> None:
    human = rows(corpus / "test.jsonl")[0]["translation"]
    assert main([str(corpus), "--model", str(seq2seq), "--batch-size", "3", "--max-new-tokens", "5"]) == 0
    for split in ("train", "dev", "test"):
        for k, r in enumerate(rows(corpus / f"{split}.jsonl")):
            if split == "test" and k == 0:  # a human translation stays, unmarked
                assert r["translation"] == human and "translation_source" not in r
            else:
                assert isinstance(r["translation"], str) and r["translation_source"] == f"machine:{seq2seq}"
    before = {s: (corpus / f"{s}.jsonl").read_bytes() for s in ("train", "dev", "test")}
    assert main([str(corpus), "--model", str(seq2seq)]) == 0  # nothing left to do: nothing changes
    assert before == {s: (corpus / f"{s}.jsonl").read_bytes() for s in ("train", "dev", "test")}
    assert not (corpus / WORK_DIR / "train.jsonl").exists()


def test_a_rerun_after_a_kill_keeps_the_finished_batches(corpus: Path, seq2seq: Path) -> None:
    """Rows translated before the stop come from the work file, not from the model again."""
    first = rows(corpus / "train.jsonl")[0]["id"]
    (corpus / WORK_DIR).mkdir()
    (corpus / WORK_DIR / "train.jsonl").write_text(json.dumps({"id": first, "translation": "kept from before"}) + "\n")
    assert main([str(corpus), "--model", str(seq2seq), "--splits", "train", "--max-new-tokens", "3"]) == 0
    assert rows(corpus / "train.jsonl")[0]["translation"] == "kept from before"


def test_a_causal_lm_translates_by_prompt_one_line_each(corpus: Path, tmp_path: Path) -> None:
    tiny.save_anchor(str(tmp_path / "lm"), ["Translate Telugu to English. అమ్మ నీరు mother water"], kind="llama")
    assert main([str(corpus), "--model", str(tmp_path / "lm"), "--splits", "dev", "--max-new-tokens", "6"]) == 0
    assert all("\n" not in r["translation"] and r["translation_source"].startswith("machine:")
               for r in rows(corpus / "dev.jsonl"))


def test_usage_errors(corpus: Path, tmp_path: Path) -> None:
    assert main([str(tmp_path / "nothing"), "--model", "x"]) == 2
    assert main([str(corpus), "--model", str(tmp_path / "no_model_here")]) == 2
