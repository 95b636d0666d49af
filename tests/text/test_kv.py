"""The key-value arithmetic experiment: its data, its tokenizer, and the whole recipe at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from data_prep.kv_arithmetic import main as kv_main
from speech_calm.text.kv import DATASETS, accuracy, kv_tokenizer, read_rows, table
from speech_calm.text.kv_data import (
    KVSettings,
    build,
    choose_compose_keys,
    evaluate,
    join_terms,
    make_keys,
    number,
    prepare,
    split_terms,
    value,
)
from speech_calm.text.rows import Row
from speech_calm.training.loop import run
from speech_calm.training.recipe import load_recipe
from tests.runs import tiny_kv_recipe

SMALL = KVSettings(num_keys=40, operands=(2, 3), substitution_train=300, arithmetic_train=300,
                   kv_arithmetic_train=200, test_rows=40)


def test_numbers_and_expressions() -> None:
    assert evaluate("17+142-3") == 156 and evaluate("2*3+4-1*5") == 5
    assert number(17, little_endian=True, width=3) == "710" and number(-156, little_endian=False) == "-156"
    assert split_terms("ab+cd-e", "+-") == (["ab", "cd", "e"], ["+", "-"])
    assert value("ab-cd", {"ab": 5, "cd": 7}, "+-") == -2


def test_keys_are_prefix_free_and_values_a_permutation() -> None:
    kv = make_keys(KVSettings(num_keys=300, key_length=(2, 3)))
    keys = list(kv)
    assert sorted(kv.values()) == list(range(1, 301))
    assert all(2 <= len(k) <= 3 for k in keys)
    assert not [(a, b) for a in keys for b in keys if a != b and b.startswith(a)]  # no key begins another


def test_data_splits_and_held_out_keys() -> None:
    files = build(SMALL)
    assert build(SMALL) == files  # a pure function of the settings
    keys = {r["key"]: r for r in files["keys.jsonl"]}
    compose = {k for k, r in keys.items() if r["compose"]}
    assert len(compose) == 8  # 20% of 40
    ops = SMALL.operators
    for name in DATASETS:
        train = {r["src"] for r in files[f"{name}/train.jsonl"]}
        test = [r["src"] for r in files[f"{name}/test.jsonl"]]
        assert len(set(test)) == len(test) and not train & set(test), name  # test expressions never trained on
    kv = {k: r["value"] for k, r in keys.items()}
    for r in files["kv_arithmetic/test.jsonl"]:
        terms, _ = split_terms(r["src"], ops)
        assert not set(terms) & compose  # held-out keys only
        assert r["tgt"] == number(value(r["src"], kv, ops), True, 3)
        assert value(r["src"], kv, ops) >= 0
    for r in files["kv_arithmetic/train.jsonl"]:
        assert set(split_terms(r["src"], ops)[0]) <= compose  # composition sees 20% of the keys
    for r in files["substitution/train.jsonl"][:50]:
        terms, signs = split_terms(r["src"], ops)
        assert split_terms(r["tgt"], ops) == ([number(kv[t], True, 3) for t in terms], signs)


def test_arithmetic_rows_behind_a_prefix_of_letters() -> None:
    """m_B's rows: some behind random letters ('xq+ab='), which say nothing of the result (the layout of
    KV-Arithmetic with its values written out); the others plain numbers, as in the paper."""
    rows = build(SMALL)["arithmetic/train.jsonl"]
    prefixed = [r for r in rows if "=" in r["src"]]
    assert 0.35 < len(prefixed) / len(rows) < 0.65  # SMALL.arithmetic_prefix = 0.5
    for r in rows:
        letters, _, numbers = r["src"].rpartition("=")
        terms, signs = split_terms(numbers, SMALL.operators)
        assert all(t.isdigit() for t in terms)
        result = evaluate(join_terms([t[::-1].lstrip("0") or "0" for t in terms], signs))  # little-endian digits
        assert r["tgt"] == number(result, True, 3)
        if letters:
            words, _ = split_terms(letters, SMALL.operators)
            assert len(words) == len(terms) and all(w.isalpha() and 2 <= len(w) <= 3 for w in words)
    plain = build(KVSettings(**{**SMALL.__dict__, "arithmetic_prefix": 0.0}))["arithmetic/train.jsonl"]
    assert not [r for r in plain if "=" in r["src"]]


def test_composition_keys_cover_every_digit_at_every_place() -> None:
    """20 random keys of 100 usually miss some digit at some place; the chosen ones use every (place, digit)
    that the values use, and stay 20% of the keys; without `cover_digits`, the first 20% in key order."""
    settings = KVSettings(num_keys=100, operands=(2, 2))
    kv = make_keys(settings)

    def places(keys: list[str]) -> set[tuple[int, str]]:
        return {(i, c) for k in keys for i, c in enumerate(number(kv[k], True, 3))}

    chosen = choose_compose_keys(kv, settings)
    assert len(chosen) == 20 and len(set(chosen)) == 20
    assert places(chosen) == places(list(kv))  # units and tens 0-9, hundreds 0 and 1 (for 100)
    first = choose_compose_keys(kv, KVSettings(num_keys=100, operands=(2, 2), cover_digits=False))
    assert first == list(kv)[:20] and places(first) != places(list(kv))


def test_command_line_passes_every_setting(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--num-keys", "40", "--substitution-train", "100", "--arithmetic-train",
            "100", "--kv-arithmetic-train", "50", "--test-rows", "10", "--arithmetic-prefix", "0",
            "--no-cover-digits"]
    assert kv_main(args) == 0
    settings = json.loads((tmp_path / "stats.json").read_text())["settings"]
    assert settings["arithmetic_prefix"] == 0 and settings["cover_digits"] is False and settings["num_keys"] == 40
    assert not [r for r in read_rows(tmp_path, "arithmetic", "train") if "=" in r.prompt[:-1]]


def test_prepare_is_idempotent_and_refuses_other_settings(tmp_path: Path) -> None:
    stats = prepare(tmp_path, SMALL)
    stamp = (tmp_path / "kv_arithmetic" / "test.jsonl").stat().st_mtime_ns
    assert prepare(tmp_path, SMALL) == stats
    assert (tmp_path / "kv_arithmetic" / "test.jsonl").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="other settings"):
        prepare(tmp_path, KVSettings(num_keys=41))
    assert len(read_rows(tmp_path, "kv_arithmetic", "test")) == 40


def test_tokenizer_reads_characters() -> None:
    tok = kv_tokenizer("abc")
    ids = tok("ab+710=")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 8
    assert tok.decode(ids, skip_special_tokens=True) == "ab+710="


def test_accuracy_and_table() -> None:
    rows = [Row("a=", "1"), Row("b=", "2")]
    assert accuracy(rows, ["1", " 3"]) == 50.0
    md = table({"m_A": {"substitution": 98.0, "arithmetic": 4.0, "kv_arithmetic": 1.0}}, {"m_A": 1500})
    assert "| KV-Substitution | 98.0 |" in md and "(held-out keys)" in md


def test_tiny_experiment_end_to_end(tmp_path: Path) -> None:
    """Every stage of recipes/kv_arithmetic.yaml at a tiny size: the table has all five models."""
    path = tiny_kv_recipe(tmp_path / "run")
    assert load_recipe(path).kv.mix_arithmetic == 0.5  # half as many Numeric-Arithmetic rows join the composition's
    run_dir = run(load_recipe(path))
    result = json.loads((run_dir / "kv_eval" / "table.json").read_text())
    assert list(result["accuracy"]) == ["m_A", "m_B", "CALM", "LoRA", "m_B fine-tuned"]
    assert all(set(v) == set(DATASETS) for v in result["accuracy"].values())
    calm, lora = result["trainable_parameters"]["CALM"], result["trainable_parameters"]["LoRA"]
    assert abs(lora - calm) / calm < 0.1  # LoRA's rank is matched to the bridges' parameter count
    for stage in ("kv_compose", "kv_lora", "kv_finetune"):  # the 100 KV-Arithmetic rows and 50 of m_B's own
        assert json.loads((run_dir / stage / "params.json").read_text())["train_rows"] == 150
    bridges = load_file(str(run_dir / "kv_compose" / "bridges.safetensors"))
    assert all(k.startswith("m_a.") for k in bridges)  # bridges only, no tower weight
    assert "| KV-Arithmetic (held-out keys) |" in (run_dir / "kv_eval" / "table.md").read_text()
    # m_A and m_B are model directories with the shared tokenizer
    from transformers import AutoTokenizer

    tok_a = AutoTokenizer.from_pretrained(run_dir / "kv_m_a" / "model")
    tok_b = AutoTokenizer.from_pretrained(run_dir / "kv_m_b" / "model")
    assert tok_a.get_vocab() == tok_b.get_vocab()
