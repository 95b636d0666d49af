"""Search through a composition: greedy and beam search with the anchor's KV cache and m_A memory.

m_A runs once per `generate` call (`Composition.encode`); each bridge's keys and values are computed once and
reused for every generated token; the anchor keeps its own KV cache and, in aligned mode, m_A keeps another
(inside the `Memory`). Prompts are left-padded so that every row's next token sits in the last column.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

from speech_calm.core.composition import Composition
from speech_calm.core.tower import output_cache


@dataclass(frozen=True)
class SearchConfig:
    """The search a recipe chooses (a `decoding` section); `DecodingOptions` adds what the task fixes."""

    max_new_tokens: int = 128  # hard cap on generated tokens per item
    beam_size: int = 1  # 1 = greedy
    length_penalty: float = 1.0  # beam: final score = logprob / length ** length_penalty
    no_repeat_ngram_size: int = 0  # forbid repeating any generated n-gram of this size (0 = off)
    repetition_penalty: float = 1.0  # >1 lowers the score of tokens already generated (CTRL-style)

    def search(self) -> dict[str, Any]:
        """These settings as keyword arguments (of `DecodingOptions`)."""
        return {f.name: getattr(self, f.name) for f in fields(SearchConfig)}


@dataclass(frozen=True)
class DecodingOptions(SearchConfig):
    """How to search. Frozen: one object describes one decoding configuration."""

    eos_token_ids: tuple[int, ...] = ()  # generation of an item ends at any of these
    pad_token_id: int = 0  # fills rows that have finished
    use_cache: bool = True  # False recomputes everything at every step (for checking the cache)
    # a task's closed output vocabulary (e.g. a script's characters): every other token gets probability 0
    allowed_token_ids: tuple[int, ...] | None = None
    allowed_until: int | None = None  # a row generating this token is free of `allowed_token_ids` from then on


def generate(
    model: Composition,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    tower_inputs: Mapping[str, Mapping[str, Any]] | None = None,
    options: DecodingOptions = DecodingOptions(),
    max_new_tokens: Sequence[int] | None = None,
    tower_outputs: Mapping[str, Any] | None = None,
) -> list[list[int]]:
    """Generate continuations of left-padded prompts `input_ids` (B, T) given m_A inputs.

    tower_inputs / tower_outputs: m_A's inputs per tower, or its states already computed (see
    `Composition.encode`); neither = the anchor alone.
    max_new_tokens: optional per-item caps (e.g. from audio duration), each at most `options.max_new_tokens`.
    Returns the generated token ids per item, without the prompt and without the end-of-sequence token.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if (attention_mask[:, -1] == 0).any():
        raise ValueError("prompts must be left-padded (the last column real for every row)")
    if not options.use_cache and getattr(model, "uses_score_bias", False):
        # each call would read the whole sequence as a prompt: the queries' context is counted step by step
        raise ValueError("bridges with a score bias decode with use_cache=True (the context of each query is "
                         "counted from the tokens as they are fed)")
    limits = [options.max_new_tokens] * input_ids.shape[0]
    if max_new_tokens is not None:
        limits = [min(options.max_new_tokens, int(n)) for n in max_new_tokens]
    towers = {"tower_inputs": tower_inputs, "tower_outputs": tower_outputs}
    with torch.no_grad():
        if options.beam_size > 1:
            return _beam(model, input_ids, attention_mask, towers, options, limits)
        return _greedy(model, input_ids, attention_mask, towers, options, limits)


@functools.lru_cache(maxsize=8)
def _id_tensor(ids: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Token ids as a tensor on `device`, made once for the search that uses them at every step."""
    return torch.tensor(ids, device=device)


def _adjust(logits: torch.Tensor, generated: torch.Tensor, options: DecodingOptions) -> torch.Tensor:
    """Log-probabilities (N, V) over the allowed tokens (all by default, or until `allowed_until`), after
    repetition penalty and n-gram blocking over `generated` (N, G)."""
    logits = logits.float()
    if options.allowed_token_ids is not None:
        allowed = _id_tensor(options.allowed_token_ids, logits.device)  # once per search, not per token
        closed = torch.full_like(logits, -float("inf")).index_copy(1, allowed, logits.index_select(1, allowed))
        if options.allowed_until is not None and generated.shape[1]:
            free = (generated == options.allowed_until).any(1, keepdim=True)  # (N, 1)
            closed = torch.where(free, logits, closed)
        logits = closed
    if options.repetition_penalty != 1.0 and generated.shape[1]:
        seen = torch.gather(logits, 1, generated)
        seen = torch.where(seen > 0, seen / options.repetition_penalty, seen * options.repetition_penalty)
        logits = logits.scatter(1, generated, seen)
    logprobs = torch.log_softmax(logits, dim=-1)
    n = options.no_repeat_ngram_size
    if n > 0 and generated.shape[1] >= n:
        rows = generated.tolist()
        for r, seq in enumerate(rows):
            prefix = tuple(seq[len(seq) - n + 1 :]) if n > 1 else ()
            banned = {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i : i + n - 1]) == prefix}
            if banned:
                logprobs[r, list(banned)] = -float("inf")
    return logprobs


def _greedy(
    model: Composition,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    towers: dict[str, Any],
    options: DecodingOptions,
    limits: list[int],
) -> list[list[int]]:
    b = input_ids.shape[0]
    device = input_ids.device
    eos = torch.tensor(options.eos_token_ids or [-1], device=device)
    generated = torch.empty(b, 0, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    limit = torch.tensor(limits, device=device)
    ids, mask = input_ids, attention_mask
    if options.use_cache:
        memory = model.encode(**towers)  # m_A once per call
        out = model(ids, mask, memory=memory, use_cache=True, logits_to_keep=1)
    else:
        out = model(ids, mask, **towers, logits_to_keep=1)
    for step in range(max(limits)):
        logprobs = _adjust(out.logits[:, -1], generated, options)
        token = logprobs.argmax(-1)  # (B,)
        token = torch.where(done, torch.full_like(token, options.pad_token_id), token)
        generated = torch.cat([generated, token[:, None]], dim=1)
        done |= torch.isin(token, eos) | (limit <= step + 1)
        if done.all():
            break  # no forward for a token nobody needs
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if options.use_cache:
            out = model(token[:, None], mask, memory=memory, cache=output_cache(out), use_cache=True)
        else:
            ids = torch.cat([ids, token[:, None]], dim=1)
            out = model(ids, mask, **towers, logits_to_keep=1)
    return [_strip(row, options, n) for row, n in zip(generated.tolist(), limits)]


def _strip(tokens: list[int], options: DecodingOptions, limit: int) -> list[int]:
    """Cut at the first end-of-sequence token and at the item's limit."""
    tokens = tokens[:limit]
    for i, t in enumerate(tokens):
        if t in options.eos_token_ids:
            return tokens[:i]
    return tokens


def _beam(
    model: Composition,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    towers: dict[str, Any],
    options: DecodingOptions,
    limits: list[int],
) -> list[list[int]]:
    """Beam search: K live hypotheses per item; finished ones scored by logprob / length ** length_penalty."""
    if not options.use_cache:
        raise ValueError("beam search needs use_cache=True")
    b, k = input_ids.shape[0], options.beam_size
    device = input_ids.device
    eos = set(options.eos_token_ids)
    memory = model.encode(**towers)
    out = model(input_ids, attention_mask, memory=memory, use_cache=True, logits_to_keep=1)
    # the prompt is read once per item; its cache and the memory are then repeated for the K beams
    rows = torch.arange(b, device=device).repeat_interleave(k)
    cache = output_cache(out)
    cache.batch_repeat_interleave(k)
    if memory is not None:  # None: a prefix model given no audio
        memory.select(rows)
    mask = attention_mask[rows]
    logits = out.logits[:, -1][rows]  # (B*K, V)
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = -float("inf")  # all K beams start equal: keep one so the first step gives K distinct ones
    generated = torch.empty(b * k, 0, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    closed = [False] * b
    for step in range(max(limits)):
        logprobs = _adjust(logits, generated, options)  # (B*K, V)
        vocab = logprobs.shape[-1]
        total = (scores.view(-1, 1) + logprobs).view(b, k * vocab)
        top_scores, top_idx = total.topk(2 * k, dim=-1)  # (B, 2K): enough to refill K after EOS picks
        # rows left unfilled keep pointing at their own item, with a score of -inf
        next_beam = (torch.arange(b, device=device) * k)[:, None].repeat(1, k)
        next_token = torch.full((b, k), options.pad_token_id, dtype=torch.long, device=device)
        next_scores = torch.full((b, k), -float("inf"), device=device)
        for i in range(b):
            if closed[i]:
                continue  # rows kept aligned; their output is ignored
            filled = 0
            for score, idx in zip(top_scores[i].tolist(), top_idx[i].tolist()):
                beam, token = divmod(idx, vocab)
                if score == -float("inf"):
                    break
                seq = generated[i * k + beam].tolist()
                if token in eos or step + 1 >= limits[i]:
                    hyp = seq if token in eos else seq + [token]
                    finished[i].append((score / max(len(hyp), 1) ** options.length_penalty, hyp))
                    continue
                next_beam[i, filled], next_token[i, filled], next_scores[i, filled] = i * k + beam, token, score
                filled += 1
                if filled == k:
                    break
            # stop an item once K hypotheses have ended (HF's early stopping) or its cap is reached
            if len(finished[i]) >= k or step + 1 >= limits[i] or filled == 0:
                closed[i] = True
        if all(closed):
            break
        order = next_beam.view(-1)
        generated = torch.cat([generated[order], next_token.view(-1, 1)], dim=1)
        scores = next_scores
        cache.reorder_cache(order)
        if memory is not None:
            memory.select(order)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = model(next_token.view(-1, 1), mask, memory=memory, cache=cache, use_cache=True)
        cache = output_cache(out)
        logits = out.logits[:, -1]
    results = []
    for i in range(b):
        if not finished[i]:  # nothing ended: take the best live beam
            best = int(scores[i].argmax())
            seq = generated[i * k + best].tolist()
            finished[i].append((0.0, seq))
        results.append(max(finished[i], key=lambda h: h[0])[1])
    return results
