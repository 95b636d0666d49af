"""CTC prefix scores against brute force: the sum over every CTC path whose collapse starts with (or is) h."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from speech_calm.towers.ctc_prefix import CTCPrefixScorer

T, L = 6, 4  # labels: 0 blank, 1 and 2 characters, 3 space
TOKENS = {10: (1,), 11: (2,), 12: (3,), 13: (1, 2)}  # 13 writes two labels
END = 20


def collapse(path: tuple[int, ...]) -> list[int]:
    out, prev = [], None
    for x in path:
        if x != prev and x != 0:
            out.append(x)
        prev = x
    return out


def brute(log_probs: torch.Tensor, frames: int, h: list[int], whole: bool) -> float:
    total = 0.0
    for path in itertools.product(range(L), repeat=frames):
        c = collapse(path)
        if (c == h) if whole else (c[: len(h)] == h):
            total += math.exp(sum(float(log_probs[t, p]) for t, p in enumerate(path)))
    return math.log(total) if total > 0 else -math.inf


@pytest.mark.parametrize("tokens", [[10], [10, 11], [10, 10], [12, 10, 11], [13, 11], [11, 12, 10], [13, 13]])
def test_prefix_and_end_scores_match_brute_force(tokens: list[int]) -> None:
    torch.manual_seed(0)
    log_probs = torch.randn(2, T, L).log_softmax(-1)
    lengths = torch.tensor([6, 4])  # the second item is padded: its last frames count for nothing
    scorer = CTCPrefixScorer(log_probs, lengths, TOKENS, [END], space=3)
    state, h = scorer.start(), []
    for tok in tokens:
        delta = scorer.score(state, torch.tensor([[tok, END]] * 2))
        labels = [] if tok == 12 and not h else list(TOKENS[tok])  # a leading space writes nothing
        for i in range(2):
            n = int(lengths[i])
            prefix = brute(log_probs[i], n, h + labels, False) - brute(log_probs[i], n, h, False)
            whole = brute(log_probs[i], n, h, True) - brute(log_probs[i], n, h, False)
            assert delta[i, 0].item() == pytest.approx(prefix, abs=1e-4)
            assert delta[i, 1].item() == pytest.approx(whole, abs=1e-4)
        state, h = scorer.advance(state, torch.tensor([tok, tok])), h + labels


def test_unknown_tokens_score_minus_infinity_and_an_ended_prefix_scores_nothing() -> None:
    log_probs = torch.randn(1, T, L).log_softmax(-1)
    scorer = CTCPrefixScorer(log_probs, torch.tensor([T]), TOKENS, [END], space=3)
    state = scorer.start()
    assert scorer.score(state, torch.tensor([[99]]))[0, 0] == -math.inf
    ended = scorer.advance(state, torch.tensor([END]))
    assert scorer.score(ended, torch.tensor([[10, 99, END]])).tolist() == [[0.0, 0.0, 0.0]]
    kept = scorer.advance(state, torch.tensor([10]), active=torch.tensor([False]))
    assert torch.equal(kept.rb, state.rb) and int(kept.last) == -1
