"""Drafted greedy search: whatever the drafts, the output is token for token greedy search's; a right draft
costs one anchor forward. And the prefix-scorer hook (joint scoring) in greedy, drafted and beam search."""

from __future__ import annotations

import random

import pytest
import torch

from speech_calm.core.bridge import BridgeConfig
from speech_calm.core.composition import Composition
from speech_calm.core.decoding import DecodeStats, DecodingOptions, _realign, generate
from speech_calm.core.prefix import PrefixComposition
from speech_calm.towers.ctc_prefix import CTCPrefixScorer
from tests import tiny
from tests.tiny import open_gates, prompt

torch.set_num_threads(2)

EOS = 2


def composed(kind: str, window: int = 64, prefix: bool = False) -> tuple[torch.nn.Module, dict]:
    """A tiny anchor of `kind` with open bridges (or a projector) over a tiny Conformer, and a padded batch
    of 3 audio inputs."""
    anchor = tiny.anchor(kind, window=window, init=0.3)
    tower = tiny.speech_tower("conformer")
    if prefix:
        model = PrefixComposition(anchor, {"speech": tower}, hidden=16, frame_stack=2)
    else:
        model = Composition(anchor, {"speech": tower}, BridgeConfig(every=1, frame_stack=2))
        open_gates(model)
    audio, lens = tiny.audio_batch([16000, 7000, 12000])
    return model, {"speech": {"audio": audio, "audio_lens": lens}}


def padded_prompts() -> tuple[torch.Tensor, torch.Tensor]:
    ids = prompt(3, 7)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    ids[1, :3] = 0
    return ids, mask


def corrupt(seq: list[int], rng: random.Random) -> list[int]:
    """A draft near `seq`: a few substitutions, deletions and insertions; sometimes empty, too long or wrong
    from its first token."""
    d = list(seq) + [EOS]
    kind = rng.random()
    if kind < 0.1:
        return []
    if kind < 0.2:
        return [(d[0] + 1) % tiny.VOCAB, *d[1:]]  # wrong at its first token
    if kind < 0.3:
        return d[:-1] + [rng.randrange(3, tiny.VOCAB) for _ in range(40)]  # longer than the cap
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(d))
        op = rng.random()
        if op < 0.4:
            d[at] = rng.randrange(3, tiny.VOCAB)
        elif op < 0.7 and len(d) > 1:
            del d[at]
        else:
            d.insert(at, rng.randrange(3, tiny.VOCAB))
    return d


OPTIONS = {
    "plain": DecodingOptions(max_new_tokens=16, eos_token_ids=(EOS,)),
    "closed": DecodingOptions(max_new_tokens=16, eos_token_ids=(EOS,), allowed_token_ids=tuple(range(2, 40)),
                              allowed_until=7),
    "penalties": DecodingOptions(max_new_tokens=16, eos_token_ids=(EOS,), repetition_penalty=1.3,
                                 no_repeat_ngram_size=2),
}


@pytest.mark.parametrize("kind", ["llama", "gpt2", "gemma3"])
@pytest.mark.parametrize("setting", sorted(OPTIONS))
def test_drafted_search_writes_what_greedy_writes(kind: str, setting: str) -> None:
    model, inputs = composed(kind)
    ids, mask = padded_prompts()
    options = OPTIONS[setting]
    caps = [16, 9, 12]
    greedy = generate(model, ids, mask, inputs, options, max_new_tokens=caps)
    rng = random.Random(f"{kind}/{setting}")
    for _ in range(12):
        drafts = [corrupt(seq, rng) for seq in greedy]
        assert generate(model, ids, mask, inputs, options, max_new_tokens=caps, drafts=drafts) == greedy, drafts


def test_a_right_draft_costs_one_forward_and_a_wrong_one_costs_no_more_than_greedy() -> None:
    model, inputs = composed("llama")
    ids, mask = padded_prompts()
    options = DecodingOptions(max_new_tokens=16, eos_token_ids=(EOS,))
    plain = DecodeStats()
    greedy = generate(model, ids, mask, inputs, options, stats=plain)
    right = DecodeStats()
    drafts = [seq + [EOS] if len(seq) < 16 else seq for seq in greedy]
    assert generate(model, ids, mask, inputs, options, drafts=drafts, stats=right) == greedy
    assert right.forwards == 1 and right.acceptance == 1.0 and plain.forwards == max(map(len, greedy))
    wrong = DecodeStats()
    junk = [[(t + 1) % tiny.VOCAB for t in seq] for seq in greedy]  # wrong everywhere
    assert generate(model, ids, mask, inputs, options, drafts=junk, stats=wrong) == greedy
    assert wrong.accepted == 0 and wrong.forwards <= plain.forwards


def test_gemma_past_its_sliding_window_falls_back_to_greedy() -> None:
    model, inputs = composed("gemma3", window=4)  # drafting would pass the window at once
    ids, mask = padded_prompts()
    options = DecodingOptions(max_new_tokens=12, eos_token_ids=(EOS,))
    greedy = generate(model, ids, mask, inputs, options)
    stats = DecodeStats()
    assert generate(model, ids, mask, inputs, options, drafts=[s + [EOS] for s in greedy], stats=stats) == greedy
    assert stats.drafted == 0


def test_prefix_model_drafts_too() -> None:
    model, inputs = composed("llama", prefix=True)
    ids, mask = padded_prompts()
    options = DecodingOptions(max_new_tokens=12, eos_token_ids=(EOS,))
    greedy = generate(model, ids, mask, inputs, options)
    rng = random.Random(0)
    for _ in range(6):
        drafts = [corrupt(seq, rng) for seq in greedy]
        assert generate(model, ids, mask, inputs, options, drafts=drafts) == greedy


def test_drafts_are_refused_where_they_cannot_be_verified() -> None:
    model, inputs = composed("llama")
    ids, mask = padded_prompts()
    with pytest.raises(ValueError, match="one .* per item"):
        generate(model, ids, mask, inputs, DecodingOptions(), drafts=[[3]])
    with pytest.raises(ValueError, match="beam_size=1"):
        generate(model, ids, mask, inputs, DecodingOptions(beam_size=2), drafts=[[3]] * 3)


def test_realign_finds_where_the_output_stands_in_the_draft() -> None:
    draft = [5, 6, 7, 8, 9]
    assert _realign([5, 6, 7], draft) == 3  # agreed so far
    assert _realign([5, 6, 1], draft) == 3  # substitution: past the draft's 7
    assert _realign([5, 6, 8], draft) == 4  # the anchor skipped 7
    assert _realign([5, 6, 1, 7], draft) == 3  # the anchor inserted 1
    assert _realign([], draft) == 0


def ctc_scorer(b: int, seed: int = 0) -> CTCPrefixScorer:
    """CTC posteriors over 6 labels; anchor tokens 3..7 write labels 1..5, EOS ends."""
    torch.manual_seed(seed)
    log_probs = torch.randn(b, 20, 6).mul(3).log_softmax(-1)
    return CTCPrefixScorer(log_probs, torch.tensor([20, 14, 17][:b]), {t: (t - 2,) for t in range(3, 8)}, [EOS])


def ctc_loglik(scorer: CTCPrefixScorer, seqs: list[list[int]]) -> list[float]:
    """log P_ctc(seq is the whole transcript) per item."""
    state, width = scorer.start(), max(map(len, seqs))
    total = torch.zeros(len(seqs))
    for j in range(width + 1):
        tokens = torch.tensor([seq[j] if j < len(seq) else EOS for seq in seqs])
        live = torch.tensor([j <= len(seq) for seq in seqs])
        total += torch.where(live, scorer.score(state, tokens[:, None])[:, 0], torch.zeros(()))
        state = scorer.advance(state, tokens, live)
    return total.tolist()


# the anchor's closed vocabulary is what m_A can write, as with `script_vocab`
CLOSED = dict(max_new_tokens=10, eos_token_ids=(EOS,), allowed_token_ids=(EOS, 3, 4, 5, 6, 7))


def test_joint_scoring_moves_greedy_toward_ctc_and_drafts_still_match_it() -> None:
    model, inputs = composed("llama")
    ids, mask = padded_prompts()
    greedy = generate(model, ids, mask, inputs, DecodingOptions(**CLOSED))
    assert generate(model, ids, mask, inputs, DecodingOptions(**CLOSED), scorer=ctc_scorer(3)) == greedy  # w = 0
    joint = DecodingOptions(**CLOSED, scorer_weight=0.9)
    mixed = generate(model, ids, mask, inputs, joint, scorer=ctc_scorer(3))
    assert mixed != greedy
    assert all(a > b for a, b in zip(ctc_loglik(ctc_scorer(3), mixed), ctc_loglik(ctc_scorer(3), greedy)))
    rng = random.Random(1)
    for _ in range(6):
        drafts = [corrupt(seq, rng) for seq in mixed]
        assert generate(model, ids, mask, inputs, joint, scorer=ctc_scorer(3), drafts=drafts) == mixed


def test_joint_beam_search_scores_hypotheses_with_ctc() -> None:
    model, inputs = composed("llama")
    ids, mask = padded_prompts()
    plain = generate(model, ids, mask, inputs, DecodingOptions(**CLOSED, beam_size=4))
    joint = generate(model, ids, mask, inputs, DecodingOptions(**CLOSED, beam_size=4, scorer_weight=0.9),
                     scorer=ctc_scorer(3))
    assert all(a > b for a, b in zip(ctc_loglik(ctc_scorer(3), joint), ctc_loglik(ctc_scorer(3), plain)))
