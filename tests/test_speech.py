"""The speech task model: chained targets and answers, and the characters-written count that
`bridge.offset_bias` reads, the same in training (teacher forcing) and decoding (cached, step by step)."""

from __future__ import annotations

import pytest
import torch

from speech_calm.config import BridgeConfig, ComposeStageConfig
from speech_calm.ctc_compress import CTCCompressedTower
from speech_calm.data import lm_batch
from speech_calm.decoding import generate
from speech_calm.speech import SpeechModel, build_composition
from speech_calm.towers import output_cache
from tests import tiny

torch.set_num_threads(2)

TEXTS = ["నా పేరు రాము", "My name is Ramu.", "పాలు ఇవ్వండి", "Please give me milk.", "\nEnglish:"] * 20


def speech_model(chain: bool, offset_bias: int | None = 4, seed: int = 0, chars: bool = False) -> SpeechModel:
    """A tiny anchor and tokenizer, a tiny CTC-compressed Conformer and open bridges (random weights)."""
    tok = tiny.tokenizer(TEXTS, vocab_size=400)  # large enough to merge Telugu characters into words
    cfg = ComposeStageConfig(bridge=BridgeConfig(every=1, offset_bias=offset_bias), compress="ctc",
                             chain_translation=chain, char_targets=chars)
    anchor = tiny.anchor("gemma3", seed, vocab=len(tok), init=0.3, window=64)
    model = build_composition(anchor, CTCCompressedTower(tiny.speech_tower("conformer")), cfg)
    with torch.no_grad():
        for name, p in model.trainable_parameters():
            if name.endswith("gate.scale"):
                p.fill_(0.7)
    return SpeechModel(model, tok, cfg)


def test_chained_rows_targets_and_answers() -> None:
    plain, chained = speech_model(chain=False), speech_model(chain=True)
    assert plain.training_tasks(True) == ["transcribe", "translate"]
    assert chained.training_tasks(True) == ["translate"]  # one row trains both tasks
    assert chained.training_tasks(False) == ["transcribe"]
    assert chained.training_target("translate", "నా పేరు రాము", "My name is Ramu.") == \
        "నా పేరు రాము\nEnglish: My name is Ramu."
    assert plain.training_target("translate", "నా పేరు రాము", "My name is Ramu.") == "My name is Ramu."
    said = "నా పేరు రాము\nEnglish: My name is Ramu."
    assert chained.answer("transcribe", said) == "నా పేరు రాము"
    assert chained.answer("translate", said) == "My name is Ramu."
    assert chained.answer("translate", "నా పేరు రాము") == ""  # the marker never came: no translation
    assert chained.prompt_ids("transcribe") == chained.prompt_ids("translate")
    assert chained.options(task="transcribe").eos_token_ids != chained.options(task="translate").eos_token_ids
    assert chained.task_caps("translate", [5]) == [10] and chained.task_caps("transcribe", [5]) == [5]


@pytest.mark.parametrize("chain", [False, True])
def test_char_targets_write_transcripts_one_character_per_token(chain: bool) -> None:
    speech, plain = speech_model(chain, chars=True), speech_model(chain)
    eos = [speech.eos_ids[0]]
    ids = speech.target_ids("నా పేరు రాము", "transcribe")
    # no token spans two characters: the ids are those of each character alone, in order
    assert ids == [i for ch in " నా పేరు రాము" for i in speech._ids(ch)] + eos
    assert speech.tokenizer.decode(ids[:-1]) == " నా పేరు రాము"
    assert len(plain.target_ids("నా పేరు రాము", "transcribe")) < len(ids)  # BPE merges characters
    english = "My name is Ramu."
    if not chain:  # a translation as the tokenizer writes it
        assert speech.target_ids(english, "translate") == plain.target_ids(english, "translate")
    else:  # the transcript part by characters, the marker and the English as the tokenizer writes them
        both = speech.target_ids(speech.training_target("translate", "నా పేరు రాము", english), "translate")
        assert both == ids[:-1] + speech._ids("\nEnglish: " + english) + eos
    assert speech.task_caps("transcribe", [5]) == [15]


@pytest.mark.parametrize("chain", [False, True])
def test_decoding_counts_characters_as_training_does(chain: bool) -> None:
    """Cached step-by-step decoding with offset-biased bridges computes, at every step, the logits of a
    teacher-forced forward over prompt + output with `chars_written`: both count characters alike."""
    speech = speech_model(chain)
    model = speech.model
    audio, lens = tiny.audio_batch([16000, 11000])
    inputs = {"speech": {"audio": audio, "audio_lens": lens}}
    prompt = speech.prompt_ids("translate")
    with torch.no_grad():
        out = generate(model, torch.tensor([prompt] * 2), None, inputs, speech.options(task="translate"),
                       max_new_tokens=[9, 9])
        n = min(map(len, out))
        assert n >= 3, out
        tokens = torch.tensor([o[:n] for o in out])  # (2, n)
        batch = lm_batch([prompt] * 2, tokens.tolist(), speech.pad_id)
        written = speech.chars_written(tokens.tolist(), batch.input_ids.shape[1])
        assert written[:, : len(prompt)].eq(0).all() and written[:, -1].gt(0).all()
        forced = model(batch.input_ids, tower_inputs=inputs, written=written).logits[:, len(prompt) - 1:]
        # the decoder's path: the prompt once, then one token at a time through the caches
        memory = model.encode(inputs)
        step = model(torch.tensor([prompt] * 2), memory=memory, use_cache=True)
        stepped = [step.logits[:, -1]]
        for i in range(n):
            mask = torch.ones(2, len(prompt) + i + 1, dtype=torch.long)
            step = model(tokens[:, i: i + 1], mask, memory=memory, cache=output_cache(step), use_cache=True)
            stepped.append(step.logits[:, -1])
        # without the count the bridges would read other slots: it matters to the result
        blind = model(batch.input_ids, tower_inputs=inputs, written=torch.zeros_like(written)).logits
    torch.testing.assert_close(torch.stack(stepped, 1), forced, rtol=1e-4, atol=1e-4)
    assert (blind[:, len(prompt) - 1:] - forced).abs().amax() > 1e-3
