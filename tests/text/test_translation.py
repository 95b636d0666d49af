"""The Telugu→English text path: its data, few-shot prompts, a small m_A reading the anchor's tokens, aligned
causality and cached generation with real (trained) text towers, and the whole recipe at a tiny size."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from data_prep.translation import prepare
from speech_calm.core.bridge import BridgeConfig
from speech_calm.core.composition import Composition
from speech_calm.core.decoding import DecodingOptions, generate
from speech_calm.text.rows import Row, TextModel
from speech_calm.text.translation import english_text, prompt, read_pairs, rows
from speech_calm.towers.hf import HFTextTower
from speech_calm.towers.load import load_anchor
from speech_calm.towers.small_lm import (
    CompactTokenizer,
    SmallLMConfig,
    bpe_tokenizer,
    build_small_lm,
    expand_vocabulary,
)
from speech_calm.training.loop import run
from speech_calm.training.recipe import load_recipe
from tests import tiny
from tests.runs import tiny_text_recipe
from tests.tiny import open_gates

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic text data and a tiny anchor whose tokenizer knows its Telugu and English."""
    root = tmp_path_factory.mktemp("text")
    prepare("synthetic", root / "data", n_train=120, n_dev=12, n_test=12, n_mono=300)
    texts = [r["src"] + " " + r["tgt"] for r in map(json.loads, (root / "data" / "train.jsonl").open())]
    texts += [json.loads(x)["text"] for x in (root / "data" / "mono.jsonl").open()]
    texts += ["Translate Telugu to English.\n\nTelugu: English:", tiny_english()]
    tiny.save_anchor(str(root / "anchor"), texts, kind="llama")
    return root


def tiny_english() -> str:
    return " ".join(english_text())


# ------------------------------------------------------------------------------------------------ data


def test_synthetic_splits_are_disjoint(tmp_path: Path) -> None:
    stats = prepare("synthetic", tmp_path, n_train=200, n_dev=20, n_test=30, n_mono=400)
    assert stats["pairs"] == {"test": 30, "dev": 20, "train": 200}
    test = {s for s, _ in read_pairs(tmp_path, "test")}
    dev = {s for s, _ in read_pairs(tmp_path, "dev")}
    train = {s for s, _ in read_pairs(tmp_path, "train")}
    mono = {json.loads(x)["text"] for x in (tmp_path / "mono.jsonl").open()}
    assert not test & (train | dev | mono) and not dev & (train | mono)
    row = json.loads((tmp_path / "test.jsonl").open().readline())
    assert set(row) == {"id", "src", "tgt", "src_lang", "tgt_lang"} and row["src_lang"] == "tel_Telu"


def test_hub_source_fails_fast_offline_and_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    stats = prepare("hf", tmp_path, n_train=50, n_dev=5, n_test=5, n_mono=50)
    assert time.time() - t0 < 20 and stats["source"].startswith("synthetic (fallback")
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    from data_prep.vaani import SourceUnavailable

    with pytest.raises(SourceUnavailable, match="HF_HUB_OFFLINE"):
        prepare("hf", tmp_path / "strict", fallback=False)


def test_local_tsv_pairs(tmp_path: Path) -> None:
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"వాక్యం {i}\tsentence {i}\n" for i in range(200)), encoding="utf-8")
    stats = prepare("local", tmp_path / "out", str(tsv))
    assert sum(stats["pairs"].values()) == 200 and min(stats["pairs"].values()) > 0


def test_few_shot_prompts() -> None:
    pool = [("ఒకటి", "one"), ("రెండు", "two"), ("మూడు", "three")]
    text = prompt("Translate Telugu to English.", pool[:2], "నాలుగు")
    assert text == ("Translate Telugu to English.\n\nTelugu: ఒకటి\nEnglish: one\n\nTelugu: రెండు\nEnglish: two"
                    "\n\nTelugu: నాలుగు\nEnglish:")
    fixed = rows([("ఒకటి", "one")], "T.", 2, pool, seed=None)[0]
    assert "ఒకటి\nEnglish: one" not in fixed.prompt  # never the pair itself as its own example
    assert fixed.target == " one" and fixed.source == "ఒకటి"
    train = rows(pool, "T.", 1, pool, seed=0)
    assert all(r.source not in r.prompt.split("\n\n")[1] for r in train)


# ------------------------------------------------------------------------------------------------ towers


def _compact_lm(workspace: Path) -> tuple[torch.nn.Module, CompactTokenizer, object]:
    _, tok = load_anchor(str(workspace / "anchor"))
    texts = [json.loads(x)["text"] for x in (workspace / "data" / "mono.jsonl").open()]
    compact = CompactTokenizer(tok, {i for t in texts for i in tok(t, add_special_tokens=False)["input_ids"]})
    model = build_small_lm(SmallLMConfig(hidden_size=24, num_layers=2, num_heads=2, intermediate_size=48),
                           len(compact), seed=3).eval()
    return model, compact, tok


def test_expanded_vocabulary_reads_anchor_ids_like_the_compact_model(workspace: Path) -> None:
    model, compact, tok = _compact_lm(workspace)
    big = expand_vocabulary(model, compact, len(tok))
    text = "బస్ పన్నెండు గంటలకు వస్తుంది."
    with torch.no_grad():
        a = model(input_ids=torch.tensor([compact(text)["input_ids"]])).logits  # (1, T, V_compact)
        b = big(input_ids=torch.tensor([tok(text)["input_ids"]])).logits  # (1, T, V)
    torch.testing.assert_close(b[..., torch.tensor(compact.ids[1:])], a[..., 1:], rtol=1e-5, atol=1e-5)
    assert big.config.vocab_size == len(tok)


def _aligned(workspace: Path) -> tuple[Composition, object]:
    model, compact, tok = _compact_lm(workspace)
    anchor, _ = load_anchor(str(workspace / "anchor"))
    comp = Composition(anchor, {"m_a": HFTextTower(expand_vocabulary(model, compact, len(tok)))},
                       BridgeConfig(mode="aligned", every=1))
    open_gates(comp)
    return comp, tok


def test_aligned_text_tower_is_causal(workspace: Path) -> None:
    """Changing tokens after position t changes nothing at positions <= t (in m_A or through the bridges)."""
    comp, tok = _aligned(workspace)
    ids = torch.tensor([tok("Telugu: బస్ పన్నెండు గంటలకు వస్తుంది.\nEnglish: The bus")["input_ids"]])
    t = ids.shape[1] // 2
    changed = ids.clone()
    changed[0, t + 1 :] = torch.flip(changed[0, t + 1 :], [0]) + 1
    with torch.no_grad():
        a, b = comp(ids).logits, comp(changed).logits
        plain = comp.anchor(input_ids=ids).logits
    torch.testing.assert_close(a[0, : t + 1], b[0, : t + 1], rtol=0, atol=0)
    assert (a[0, t + 1 :] - b[0, t + 1 :]).abs().max() > 1e-4
    assert (a - plain).abs().max() > 1e-4  # m_A does take part


def test_aligned_text_tower_cached_generation(workspace: Path) -> None:
    comp, tok = _aligned(workspace)
    tm = TextModel(comp, tok, end="\n")
    items = [Row("Telugu: బస్ వస్తుంది.\nEnglish:", ""), Row("Telugu: నా పేరు రవి.\nEnglish:", "")]
    cached = tm.generate(items, tm.options(10))
    full = tm.generate(items, DecodingOptions(max_new_tokens=10, eos_token_ids=tm.stop_ids,
                                              pad_token_id=tm.pad_id, use_cache=False))
    assert cached == full


def test_encoder_mode_text_tower_own_tokenizer(workspace: Path) -> None:
    """m_A with its own BPE reads the source sentence once; cached and uncached generation agree."""
    texts = [json.loads(x)["text"] for x in (workspace / "data" / "mono.jsonl").open()]
    own = bpe_tokenizer(texts, 300)
    m_a = build_small_lm(SmallLMConfig(hidden_size=24, num_layers=2, num_heads=2, intermediate_size=48), len(own))
    anchor, tok = load_anchor(str(workspace / "anchor"))
    comp = Composition(anchor, {"m_a": HFTextTower(m_a.eval())}, BridgeConfig(mode="encoder", every=1))
    open_gates(comp)
    tm = TextModel(comp, tok, end="\n", tower_tokenizer=own)
    items = [Row("Telugu: బస్ వస్తుంది.\nEnglish:", " The bus comes.", "బస్ వస్తుంది."),
             Row("Telugu: నా పేరు రవి.\nEnglish:", " My name is Ravi.", "నా పేరు రవి.")]
    inputs = tm.tower_inputs(items)
    ids = torch.tensor([tm.prompt_ids(items[0].prompt)])
    a = generate(comp, ids, None, {"m_a": {k: v[:1] for k, v in inputs["m_a"].items()}},
                 DecodingOptions(max_new_tokens=8))
    b = generate(comp, ids, None, {"m_a": {k: v[:1] for k, v in inputs["m_a"].items()}},
                 DecodingOptions(max_new_tokens=8, use_cache=False))
    assert a == b
    assert torch.isfinite(tm.loss(comp, items))


# ------------------------------------------------------------------------------------------------ recipe


def test_tiny_text_experiment_end_to_end(workspace: Path, tmp_path: Path) -> None:
    """Every stage of recipes/telugu_text.yaml at a tiny size; CALM leaves the anchor's English perplexity
    exactly as it was, fine-tuning does not."""
    path = tiny_text_recipe(workspace / "data", workspace / "anchor", tmp_path / "run")
    run_dir = run(load_recipe(path))
    results = json.loads((run_dir / "text_eval" / "table.json").read_text())["results"]
    assert list(results) == ["m_A", "m_B", "CALM", "LoRA", "m_B fine-tuned"]
    assert all(0 <= r["chrf"] <= 100 and 0 <= r["bleu"] <= 100 for r in results.values())
    assert results["CALM"]["english_ppl"] == results["m_B"]["english_ppl"]  # unchanged by construction
    assert results["m_B fine-tuned"]["english_ppl"] != results["m_B"]["english_ppl"]
    calm, lora = results["CALM"]["trainable"], results["LoRA"]["trainable"]
    assert abs(lora - calm) / calm < 0.15
    m_a = json.loads((run_dir / "text_lm" / "model" / "config.json").read_text())
    assert m_a["vocab_size"] == json.loads((workspace / "anchor" / "config.json").read_text())["vocab_size"]
    assert "| CALM |" in (run_dir / "text_eval" / "table.md").read_text()
