"""The speech task model: chained targets and answers, and the characters-written count that
`bridge.offset_bias` reads, the same in training (teacher forcing) and decoding (cached, step by step)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speech_calm.core.batch import lm_batch
from speech_calm.core.decoding import generate
from speech_calm.core.tower import output_cache
from speech_calm.schema import ConfigError
from speech_calm.speech.config import ComposeStageConfig, SpeechBridgeConfig
from speech_calm.speech.model import SpeechModel, build_composition
from speech_calm.towers.ctc import CTCCompressedTower
from tests import tiny

torch.set_num_threads(2)

TEXTS = ["నా పేరు రాము", "My name is Ramu.", "పాలు ఇవ్వండి", "Please give me milk.", "\nEnglish:"] * 20


def speech_model(chain: bool, offset_bias: int | None = 4, seed: int = 0, chars: bool = False,
                 script_vocab: bool = False) -> SpeechModel:
    """A tiny anchor and tokenizer, a tiny CTC-compressed Conformer and open bridges (random weights)."""
    tok = tiny.tokenizer(TEXTS, vocab_size=400)  # large enough to merge Telugu characters into words
    cfg = ComposeStageConfig(bridge=SpeechBridgeConfig(every=1, offset_bias=offset_bias), compress="ctc",
                             chain_translation=chain, char_targets=chars, script_vocab=script_vocab)
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
        forced = model(batch.input_ids, tower_inputs=inputs, bias_context=written).logits[:, len(prompt) - 1:]
        # the decoder's path: the prompt once, then one token at a time through the caches
        memory = model.encode(inputs)
        step = model(torch.tensor([prompt] * 2), memory=memory, use_cache=True)
        stepped = [step.logits[:, -1]]
        for i in range(n):
            mask = torch.ones(2, len(prompt) + i + 1, dtype=torch.long)
            step = model(tokens[:, i: i + 1], mask, memory=memory, cache=output_cache(step), use_cache=True)
            stepped.append(step.logits[:, -1])
        # without the count the bridges would read other slots: it matters to the result
        blind = model(batch.input_ids, tower_inputs=inputs, bias_context=torch.zeros_like(written)).logits
    torch.testing.assert_close(torch.stack(stepped, 1), forced, rtol=1e-4, atol=1e-4)
    assert (blind[:, len(prompt) - 1:] - forced).abs().amax() > 1e-3


def test_script_vocab_closes_transcripts_to_the_scripts_characters() -> None:
    """With `script_vocab`, a transcript is scored over (and decoded into) single script characters, space and
    <eos> only: every character target is inside, no merged piece is, translations keep the full vocabulary."""
    speech = speech_model(chain=False, chars=True, script_vocab=True)
    full = speech_model(chain=False, chars=True)
    full.model.load_state_dict(speech.model.state_dict())
    closed = speech._script_vocab.tolist()
    assert closed == sorted(closed) and speech.eos_ids[0] in closed
    pieces = speech.target_ids("నా పేరు రాము")  # as BPE writes it: some tokens hold a space and a letter
    merged = [i for i in pieces if len(speech.tokenizer.decode([i], skip_special_tokens=True)) > 1]
    assert merged and not set(merged) & set(closed)  # BPE's Telugu pieces are out
    assert set(speech.target_ids("నా పేరు రాము", "transcribe")) <= set(closed)
    assert speech.options(task="transcribe").allowed_token_ids == tuple(closed)
    assert speech.options(task="translate").allowed_token_ids is None
    assert full.options(task="transcribe").allowed_token_ids is None
    audio, lens = tiny.audio_batch([16000, 11000])
    inputs = {"speech": {"audio": audio, "audio_lens": lens}}
    prompt = torch.tensor([speech.prompt_ids("transcribe")] * 2)
    with torch.no_grad():
        said = generate(speech.model, prompt, None, inputs, speech.options(task="transcribe"), max_new_tokens=[12, 12])
        free = generate(full.model, prompt, None, inputs, full.options(task="transcribe"), max_new_tokens=[12, 12])
    assert any(said) and set(sum(said, [])) <= set(closed)
    assert not set(sum(free, [])) <= set(closed)  # this random model, left free, writes other tokens
    # the same weights: a transcript row's loss drops (fewer competitors), a translation row's is unchanged
    with torch.no_grad():
        states = {"speech": speech.tower(audio, lens)}
        for task, target, closer in [("transcribe", "నా పేరు రాము", True), ("translate", "My name is Ramu.", False)]:
            a = speech.loss(speech.model, states, [task] * 2, [target] * 2)
            b = full.loss(full.model, states, [task] * 2, [target] * 2)
            assert bool(a < b - 1e-6) if closer else torch.allclose(a, b)
    with pytest.raises(ConfigError, match="compose.script_vocab needs compose.char_targets"):
        speech_model(chain=False, script_vocab=True)


def test_script_vocab_closes_a_chained_rows_transcript_part_only() -> None:
    """Chained, the transcript's characters and the marker's first token are closed; the marker's rest and the
    English are not. Decoding a translation: characters until the marker, any token after it."""
    speech = speech_model(chain=True, chars=True, script_vocab=True)
    full = speech_model(chain=True, chars=True)
    full.model.load_state_dict(speech.model.state_dict())
    target = speech.training_target("translate", "నా పేరు రాము", "My name is Ramu.")
    closed, rest = speech._target_parts(target, "translate")
    assert closed + rest == speech.target_ids(target, "translate") == full.target_ids(target, "translate")
    assert closed[-1] == speech._marker_start and speech.tokenizer.decode(rest).endswith("My name is Ramu.<eos>")
    vocab = set(speech._script_vocab.tolist())
    assert set(closed) <= vocab and not set(rest[1:-1]) <= vocab
    opts = speech.options(task="translate")
    assert opts.allowed_token_ids == tuple(speech._script_vocab.tolist()) and opts.allowed_until == speech._marker_start
    audio, lens = tiny.audio_batch([16000, 11000])
    with torch.no_grad():
        states = {"speech": speech.tower(audio, lens)}
        # the English part's loss is the full softmax's: the chained loss differs from the open one by the
        # transcript part alone, which the closed softmax lowers
        a = speech.loss(speech.model, states, ["translate"] * 2, [target] * 2)
        b = full.loss(full.model, states, ["translate"] * 2, [target] * 2)
    assert bool(a < b - 1e-6)


@pytest.mark.parametrize("script_vocab", [False, True])
def test_chained_search_answers_both_tasks_as_separate_searches_do(script_vocab: bool) -> None:
    """Chained, one greedy search gives the transcript (its part before the marker, within the transcript's
    cap) and the translation that a search per task gives; a Transcriber decodes them the same way."""
    from speech_calm.speech.transcribe import Transcriber
    from speech_calm.training.recipe import Recipe

    speech = speech_model(chain=True, chars=True, script_vocab=script_vocab)
    audio, lens = tiny.audio_batch([16000, 11000, 6000])
    tasks = ["transcribe", "translate"]
    assert speech.shared_search(tasks) and not speech.shared_search(["transcribe"])
    assert not speech_model(chain=False).shared_search(tasks)
    separate = {task: speech.generate(task, audio, lens) for task in tasks}
    assert speech.generate_tasks(tasks, audio, lens) == separate
    model = Transcriber(speech, Recipe(compose=speech.cfg), Path("."), torch.float32)
    waves = [a[:n].numpy() for a, n in zip(audio, lens)]
    both = model.decode(waves, tasks)
    alone = [model.decode(waves, [task]) for task in tasks]
    for i in range(len(waves)):
        assert list(both[i]) == tasks
        for task, out in zip(tasks, alone):
            assert (both[i][task].text, both[i][task].tokens) == (out[i][task].text, out[i][task].tokens)


def test_a_chained_output_looping_in_its_transcript_is_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chained search that loops inside its transcript (one syllable over and over, no English marker) has an
    empty translation, but the loop is in its output: it is decoded again with 3-gram blocking."""
    from speech_calm.speech.transcribe import Transcriber
    from speech_calm.training.recipe import Recipe

    speech = speech_model(chain=True, chars=True, script_vocab=True)
    model = Transcriber(speech, Recipe(compose=speech.cfg), Path("."), torch.float32)
    loop = speech.target_ids("నా పేరు రాము" + "ము" * 10, "transcribe")[:-1]  # no <eos>, no marker
    done = speech.target_ids(speech.training_target("translate", "నా పేరు రాము", "My name is Ramu."), "translate")
    calls = []

    def first_call_loops(self, task, states, caps, d, guide=None, rows=None):  # noqa: ANN001, ANN202
        calls.append(d.no_repeat_ngram_size)  # the model's own searches stand in for these two outputs
        return [list(loop if len(calls) == 1 else done[:-1]) for _ in range(states.mask.shape[0])]

    monkeypatch.setattr(Transcriber, "_search", first_call_loops)
    audio, lens = tiny.audio_batch([16000])
    out = model.decode([audio[0].numpy()], ["transcribe", "translate"])[0]
    assert calls == [0, 3]
    assert out["transcribe"].fallback == out["translate"].fallback == 3
    assert (out["transcribe"].text, out["translate"].text) == ("నా పేరు రాము", "My name is Ramu.")
