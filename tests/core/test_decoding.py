"""Generation through a composition: cache vs recomputation, beam search, m_A run once, repetition control."""

from __future__ import annotations

import pytest
import torch

from speech_calm.core.bridge import BridgeConfig
from speech_calm.core.composition import Composition
from speech_calm.core.decoding import DecodingOptions, generate
from tests import tiny
from tests.tiny import open_gates, prompt

torch.set_num_threads(2)


def speech_model(anchor_kind: str = "gemma3") -> tuple[Composition, dict]:
    model = Composition(tiny.anchor(anchor_kind), {"speech": tiny.speech_tower("conformer")},
                        BridgeConfig(every=1, frame_stack=2))
    open_gates(model)
    audio, lens = tiny.audio_batch([16000, 7000])
    return model, {"speech": {"audio": audio, "audio_lens": lens}}


def left_padded() -> tuple[torch.Tensor, torch.Tensor]:
    ids = prompt(2, 7)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    ids[1, :3] = 0
    return ids, mask


@pytest.mark.parametrize("anchor_kind", ["gemma3", "gpt2"])
def test_greedy_with_cache_equals_recomputation(anchor_kind: str) -> None:
    model, inputs = speech_model(anchor_kind)
    ids, mask = left_padded()
    opts = DecodingOptions(max_new_tokens=12)  # gemma3's sliding window is 4: the cache must slide too
    cached = generate(model, ids, mask, inputs, opts)
    full = generate(model, ids, mask, inputs, DecodingOptions(max_new_tokens=12, use_cache=False))
    assert cached == full
    assert all(len(seq) == 12 for seq in cached)


@pytest.mark.parametrize("extra", [{}, {"window": 1, "null_slot": True}, {"window": 3}])
def test_greedy_aligned_mode_cache_equals_recomputation(extra: dict) -> None:
    model = Composition(tiny.anchor("llama"), {"lm": tiny.text_tower()},
                        BridgeConfig(every=1, mode="aligned", **extra))
    open_gates(model)
    ids, mask = left_padded()
    cached = generate(model, ids, mask, None, DecodingOptions(max_new_tokens=10))
    full = generate(model, ids, mask, None, DecodingOptions(max_new_tokens=10, use_cache=False))
    assert cached == full


def test_batched_equals_one_by_one() -> None:
    model, inputs = speech_model()
    ids, mask = left_padded()
    batch = generate(model, ids, mask, inputs, DecodingOptions(max_new_tokens=8))
    audio, lens = inputs["speech"]["audio"], inputs["speech"]["audio_lens"]
    alone = generate(model, ids[1:, 3:], None, {"speech": {"audio": audio[1:, :7000], "audio_lens": lens[1:]}},
                     DecodingOptions(max_new_tokens=8))
    assert batch[1] == alone[0]


def count_calls(module: torch.nn.Module) -> list[tuple]:
    calls: list[tuple] = []
    module.register_forward_hook(lambda m, args, kwargs, out: calls.append(kwargs), with_kwargs=True)
    return calls


def test_speech_tower_runs_once_per_generate() -> None:
    model, inputs = speech_model()
    calls = count_calls(model.towers["speech"])
    ids, mask = left_padded()
    generate(model, ids, mask, inputs, DecodingOptions(max_new_tokens=6))
    assert len(calls) == 1
    generate(model, ids, mask, inputs, DecodingOptions(max_new_tokens=6, beam_size=3))
    assert len(calls) == 2


def test_aligned_tower_advances_with_its_own_cache() -> None:
    model = Composition(tiny.anchor("qwen2"), {"lm": tiny.text_tower()}, BridgeConfig(every=1, mode="aligned"))
    open_gates(model)
    calls = count_calls(model.towers["lm"])
    ids, mask = left_padded()
    generate(model, ids, mask, None, DecodingOptions(max_new_tokens=5))
    # one call over the prompt, then one new token per step, each with a cache of its own
    assert [c["input_ids"].shape[1] for c in calls] == [7, 1, 1, 1, 1]
    caches = [c["cache"] for c in calls[1:]]
    assert all(c is not None for c in caches) and len({id(c) for c in caches}) == 1


def _sequence_logprob(model: Composition, ids: torch.Tensor, inputs: dict, seq: list[int]) -> float:
    full = torch.cat([ids, torch.tensor([seq])], dim=1)
    with torch.no_grad():
        logp = model(full, tower_inputs=inputs).logits.log_softmax(-1)
    t = ids.shape[1]
    return float(sum(logp[0, t - 1 + i, tok] for i, tok in enumerate(seq)))


def test_beam_search_batch_is_exhaustive_with_full_width() -> None:
    """With as many beams as vocabulary entries, 2-token beam search must find the best of all V² sequences."""
    model, inputs = speech_model()
    ids, mask = left_padded()
    opts = DecodingOptions(max_new_tokens=2, beam_size=tiny.VOCAB, length_penalty=0.0)
    beams = generate(model, ids, mask, inputs, opts)
    assert len(beams) == 2
    audio, lens = inputs["speech"]["audio"], inputs["speech"]["audio_lens"]
    item = {"speech": {"audio": audio[:1], "audio_lens": lens[:1]}}
    with torch.no_grad():
        first = model(ids[:1], tower_inputs=item).logits[0, -1].log_softmax(-1)  # (V,)
        seconds = torch.cat([ids[:1].repeat(tiny.VOCAB, 1), torch.arange(tiny.VOCAB)[:, None]], dim=1)
        second = model(seconds, tower_inputs={"speech": {"audio": audio[:1].repeat(tiny.VOCAB, 1),
                                                         "audio_lens": lens[:1].repeat(tiny.VOCAB)}})
        total = first[:, None] + second.logits[:, -1].log_softmax(-1)  # (V, V)
    best = divmod(int(total.argmax()), tiny.VOCAB)
    assert beams[0] == list(best)
    greedy = generate(model, ids, mask, inputs, DecodingOptions(max_new_tokens=2))
    assert _sequence_logprob(model, ids[:1], item, beams[0]) >= _sequence_logprob(model, ids[:1], item, greedy[0])


def test_beam_search_stops_at_eos_and_respects_caps() -> None:
    model, inputs = speech_model()
    ids, mask = left_padded()
    greedy = generate(model, ids, mask, inputs, DecodingOptions(max_new_tokens=6))
    eos = greedy[0][2]  # make the third greedy token of item 0 an end-of-sequence token
    opts = DecodingOptions(max_new_tokens=6, beam_size=1, eos_token_ids=(eos,))
    out = generate(model, ids, mask, inputs, opts)
    assert out[0] == greedy[0][:2]
    beams = generate(model, ids, mask, inputs, DecodingOptions(max_new_tokens=6, beam_size=4), max_new_tokens=[3, 5])
    assert len(beams[0]) <= 3 and len(beams[1]) <= 5


def test_no_repeat_ngram_blocks_repeats() -> None:
    model = Composition(tiny.anchor("llama"), {"speech": tiny.speech_tower("conformer")}, BridgeConfig(every=1))
    ids = torch.tensor([[5, 6, 5, 6, 5, 6, 5, 6]])  # a prompt that invites repetition
    out = generate(model, ids, None, None, DecodingOptions(max_new_tokens=30, no_repeat_ngram_size=2))[0]
    pairs = list(zip(out, out[1:]))
    assert len(pairs) == len(set(pairs))
    plain = generate(model, ids, None, None, DecodingOptions(max_new_tokens=30))[0]
    plain_pairs = list(zip(plain, plain[1:]))
    assert len(plain_pairs) != len(set(plain_pairs))  # without the block this random model does repeat


def test_prompts_must_be_left_padded() -> None:
    model, inputs = speech_model()
    ids = prompt(2, 5)
    mask = torch.ones_like(ids)
    mask[0, -1] = 0
    with pytest.raises(ValueError, match="left-padded"):
        generate(model, ids, mask, inputs)


def test_allowed_tokens_close_the_vocabulary() -> None:
    """Greedy and beam search emit only `allowed_token_ids`; greedy picks the best allowed token of the logits
    the unconstrained model computes (the closed softmax renormalises, it does not reorder)."""
    model, inputs = speech_model()
    ids, mask = left_padded()
    free = generate(model, ids, mask, inputs, DecodingOptions(max_new_tokens=6))
    allowed = tuple(t for t in range(tiny.VOCAB) if t not in {free[0][0], free[1][0]})[::2]
    greedy = generate(model, ids, mask, inputs, DecodingOptions(max_new_tokens=6, allowed_token_ids=allowed))
    beams = generate(model, ids, mask, inputs,
                     DecodingOptions(max_new_tokens=6, beam_size=3, allowed_token_ids=allowed))
    assert all(t in allowed for seq in greedy + beams for t in seq)
    assert all(len(seq) == 6 for seq in greedy)
    with torch.no_grad():
        logits = model(ids, mask, tower_inputs=inputs).logits[:, -1]  # (2, V)
    best = [allowed[int(i)] for i in logits[:, list(allowed)].argmax(-1)]
    assert [seq[0] for seq in greedy] == best


def test_allowed_tokens_end_at_allowed_until() -> None:
    """With `allowed_until`, a row is closed to `allowed_token_ids` until it writes that token, free after."""
    model, inputs = speech_model()
    ids, mask = left_padded()
    free = generate(model, ids, mask, inputs, DecodingOptions(max_new_tokens=8))
    allowed = tuple(sorted({free[0][0], free[1][0], 1, 2, 3}))
    until = free[0][0]  # row 0 writes it first, then decodes as if free; row 1 stays closed
    out = generate(model, ids, mask, inputs,
                   DecodingOptions(max_new_tokens=8, allowed_token_ids=allowed, allowed_until=until))
    assert out[0] == free[0]
    assert set(out[1][: out[1].index(until)] if until in out[1] else out[1]) <= set(allowed)
