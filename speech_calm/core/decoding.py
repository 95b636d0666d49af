"""Search through a composition: greedy, drafted greedy and beam search with the anchor's KV cache and m_A memory.

m_A runs once per `generate` call (`Composition.encode`); each bridge's keys and values are computed once and
reused for every generated token; the anchor keeps its own KV cache and, in aligned mode, m_A keeps another
(inside the `Memory`). Prompts are left-padded so that every row's next token sits in the last column.

Two ways to use what another model already knows about the output:

- **Drafts** (speculative decoding, Leviathan et al. 2023, with a drafter that costs nothing extra): each item
  comes with proposed tokens (e.g. m_A's own greedy CTC transcript). The anchor reads a whole draft in one
  cached forward, keeps its longest prefix that equals its own greedy choice, adds its own next token, and
  rolls its cache back to there. The output is token for token what greedy search writes; only the number of
  anchor forwards changes. Batched, each row accepts its own number of tokens: the columns a row rejected stay
  in the cache as holes that its attention mask hides (positions are counted from the mask, so the row reads
  exactly what it would have read alone), and columns no row kept are cropped.
- **A prefix scorer** (`PrefixScorer`; hybrid CTC/attention decoding, Watanabe et al. 2017): a second score
  for every candidate next token from the whole prefix, e.g. the CTC prefix probability of m_A's posteriors,
  mixed with the anchor's log-probabilities: (1 - w) * log p_anchor + w * delta_scorer, w =
  `DecodingOptions.scorer_weight`. Only the anchor's top candidates are scored (ESPnet's pre-beam).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

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
    scorer_weight: float = 0.0  # weight w of a `PrefixScorer` given to `generate` (0 = the anchor alone)


class PrefixScorer(Protocol):
    """A second opinion on every prefix (e.g. `towers.ctc_prefix.CTCPrefixScorer`): a state per search row,
    extended token by token. Scores are log-probability increments, log P(prefix + token) - log P(prefix)."""

    def start(self) -> Any:
        """The state of the empty prefix for each of the batch's B items."""

    def score(self, state: Any, tokens: torch.Tensor) -> torch.Tensor:
        """Increments (N, K) of appending each of the candidate `tokens` (N, K) to each row's prefix."""

    def advance(self, state: Any, tokens: torch.Tensor, active: torch.Tensor | None = None) -> Any:
        """The state after appending `tokens` (N,) to each row (only where `active` (N,) bool is True)."""

    def select(self, state: Any, index: torch.Tensor) -> Any:
        """Rows `index` of the state (beam search reorders and repeats rows)."""


@dataclass
class DecodeStats:
    """What a search cost, accumulated over `generate` calls given the same object."""

    items: int = 0  # rows decoded
    forwards: int = 0  # anchor forwards (the prompt's included)
    tokens: int = 0  # tokens generated (end-of-sequence included)
    drafted: int = 0  # draft tokens read by the anchor
    accepted: int = 0  # draft tokens the anchor kept

    @property
    def acceptance(self) -> float:
        """Share of the draft tokens read that were kept."""
        return self.accepted / self.drafted if self.drafted else 0.0


def generate(
    model: Composition,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    tower_inputs: Mapping[str, Mapping[str, Any]] | None = None,
    options: DecodingOptions = DecodingOptions(),
    max_new_tokens: Sequence[int] | None = None,
    tower_outputs: Mapping[str, Any] | None = None,
    drafts: Sequence[Sequence[int]] | None = None,
    scorer: PrefixScorer | None = None,
    stats: DecodeStats | None = None,
) -> list[list[int]]:
    """Generate continuations of left-padded prompts `input_ids` (B, T) given m_A inputs.

    tower_inputs / tower_outputs: m_A's inputs per tower, or its states already computed (see
    `Composition.encode`); neither = the anchor alone.
    max_new_tokens: optional per-item caps (e.g. from audio duration), each at most `options.max_new_tokens`.
    drafts: greedy search only: proposed tokens per item, verified by the anchor several at a time (the output
        is the same as without them; see the module docstring). An empty draft decodes that item plainly.
    scorer: a `PrefixScorer` mixed in with weight `options.scorer_weight` (greedy, drafted and beam search).
    stats: a `DecodeStats` to add this call's costs to.
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
    if drafts is not None and len(drafts) != input_ids.shape[0]:
        raise ValueError(f"{len(drafts)} drafts for {input_ids.shape[0]} prompts; give one (maybe empty) per item")
    if drafts is not None and (options.beam_size > 1 or not options.use_cache):
        raise ValueError("drafts are verified by cached greedy search: use beam_size=1 and use_cache=True")
    if scorer is not None and not options.use_cache:
        raise ValueError("a prefix scorer decodes with use_cache=True")
    if not 0.0 <= options.scorer_weight < 1.0:
        raise ValueError(f"scorer_weight is a mixing weight in [0, 1); got {options.scorer_weight}")
    scorer = scorer if options.scorer_weight > 0 else None
    stats = stats if stats is not None else DecodeStats()
    stats.items += input_ids.shape[0]
    towers = {"tower_inputs": tower_inputs, "tower_outputs": tower_outputs}
    with torch.no_grad():
        if options.beam_size > 1:
            return _beam(model, input_ids, attention_mask, towers, options, limits, scorer, stats)
        if drafts is not None and any(drafts):
            try:
                return _drafted(model, input_ids, attention_mask, towers, options, limits, drafts, scorer, stats)
            except _WindowReached:
                pass  # holes would push a sliding-window layer past its window: greedy writes the same output
        return _greedy(model, input_ids, attention_mask, towers, options, limits, scorer, stats)


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


PREBEAM = 8  # candidates per row the prefix scorer scores (at least 2 x the beam)


def _joint(logprobs: torch.Tensor, scorer: PrefixScorer | None, state: Any, options: DecodingOptions) -> torch.Tensor:
    """Scores (N, V) to search by: `logprobs` alone, or with a scorer (1 - w) * logprobs + w * increments
    over each row's top candidates (every other token -inf)."""
    if scorer is None:
        return logprobs
    k = min(max(PREBEAM, 2 * options.beam_size), logprobs.shape[-1])
    top, cand = logprobs.topk(k, dim=-1)  # (N, K)
    w = options.scorer_weight
    mixed = (1 - w) * top + w * scorer.score(state, cand).to(top.dtype)
    mixed = torch.where(torch.isfinite(top), mixed, torch.full_like(mixed, -float("inf")))
    joint = torch.full_like(logprobs, -float("inf")).scatter(1, cand, mixed)
    # a row none of whose candidates the scorer can write (or already dead) follows the anchor alone
    lost = ~torch.isfinite(mixed).any(-1, keepdim=True)
    return torch.where(lost, logprobs, joint)


def _greedy(
    model: Composition,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    towers: dict[str, Any],
    options: DecodingOptions,
    limits: list[int],
    scorer: PrefixScorer | None = None,
    stats: DecodeStats | None = None,
) -> list[list[int]]:
    b = input_ids.shape[0]
    device = input_ids.device
    stats = stats if stats is not None else DecodeStats()
    state = scorer.start() if scorer is not None else None
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
    stats.forwards += 1
    for step in range(max(limits)):
        logprobs = _joint(_adjust(out.logits[:, -1], generated, options), scorer, state, options)
        token = logprobs.argmax(-1)  # (B,)
        token = torch.where(done, torch.full_like(token, options.pad_token_id), token)
        stats.tokens += int((~done).sum())
        if scorer is not None:
            state = scorer.advance(state, token, ~done)
        generated = torch.cat([generated, token[:, None]], dim=1)
        done |= torch.isin(token, eos) | (limit <= step + 1)
        if done.all():
            break  # no forward for a token nobody needs
        stats.forwards += 1
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if options.use_cache:
            out = model(token[:, None], mask, memory=memory, cache=output_cache(out), use_cache=True)
        else:
            ids = torch.cat([ids, token[:, None]], dim=1)
            out = model(ids, mask, **towers, logits_to_keep=1)
    return [_strip(row, options, n) for row, n in zip(generated.tolist(), limits)]


class _WindowReached(Exception):
    """A drafted search's cache would reach a sliding-window layer's window, where a row's holes would change
    which keys the window holds."""


def _sliding_window(model: Composition) -> int | None:
    """The anchor's sliding attention window, if any of its layers has one."""
    config = getattr(getattr(model, "anchor", None), "config", None)
    window = getattr(config, "sliding_window", None)
    return int(window) if window else None


def _realign(output: Sequence[int], draft: Sequence[int]) -> int:
    """How much of `draft` the `output` covers: the j whose draft[:j] is closest to `output` by edit distance
    (the largest j on a tie, so that a substituted token moves past the draft's one)."""
    prev = list(range(len(draft) + 1))  # distance of the empty output to draft[:j]
    for tok in output:
        cur = [prev[0] + 1]
        for j, d in enumerate(draft, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (tok != d)))
        prev = cur
    best = min(prev)
    return max(j for j, c in enumerate(prev) if c == best)


def _drafted(
    model: Composition,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    towers: dict[str, Any],
    options: DecodingOptions,
    limits: list[int],
    drafts: Sequence[Sequence[int]],
    scorer: PrefixScorer | None,
    stats: DecodeStats,
) -> list[list[int]]:
    """Greedy search that reads each row's draft several tokens per anchor forward (see the module docstring).

    A round feeds every live row [its last chosen token] + [what its draft proposes next]; position j's
    logits then give the anchor's choice after the row's output and the draft's first j tokens. The row keeps
    the proposals up to the first one that differs from that choice, plus the choice itself, which the next
    round feeds. The first round feeds the prompt with the proposals, so a draft that is right to its end
    token costs one forward.
    """
    if any(cfg.mode == "aligned" for cfg in getattr(model, "configs", {}).values()):
        raise ValueError("drafts need encoder-mode towers: an aligned m_A's own cache is not rolled back")
    b, device = input_ids.shape[0], input_ids.device
    window = _sliding_window(model)
    eos = set(options.eos_token_ids)
    counter = model.context_counter if getattr(model, "uses_score_bias", False) else None
    # a prefix model splices the audio in front of the first call's tokens: its prompt goes alone
    with_prompt = isinstance(model, Composition)
    memory = model.encode(**towers)
    output: list[list[int]] = [[] for _ in range(b)]
    pending: list[int | None] = [None] * b  # each row's last choice, not yet fed
    pointer = [0] * b  # how much of each draft the output covers
    done = [False] * b
    state = scorer.start() if scorer is not None else None
    mask, cache, first = attention_mask, None, True
    holes = False  # whether a live row has rejected columns in the cache (left padding is no hole)
    while not all(done):
        past = cache.get_seq_length() if cache is not None else input_ids.shape[1] + _memory_width(memory)
        budget = max(len(d) for d in drafts)
        if window is not None:
            # a sliding window counts cache columns, holes included: near it, drop the holes (columns are then
            # positions again, as in greedy search), and read no more of a draft than fits below the window
            if past + 2 + budget >= window and holes:
                compacted = _compact(cache, mask) if with_prompt else None
                if compacted is None:
                    raise _WindowReached
                mask, past, holes = compacted, compacted.shape[1], False
            budget = min(budget, max(0, window - 2 - past))
        proposals, feeds = [], []
        for i in range(b):
            room = min(limits[i] - len(output[i]), budget)
            prop = [] if done[i] or (first and not with_prompt) else list(drafts[i][pointer[i]: pointer[i] + room])
            proposals.append(prop)
            feeds.append([] if done[i] else [t for t in [pending[i]] if t is not None] + prop)
        width = max(len(f) for f in feeds)
        chunk = torch.full((b, width), options.pad_token_id, dtype=torch.long, device=device)
        chunk_mask = torch.zeros(b, width, dtype=mask.dtype, device=device)
        for i, feed in enumerate(feeds):
            chunk[i, : len(feed)] = torch.tensor(feed, dtype=torch.long)
            chunk_mask[i, : len(feed)] = 1
        ids = torch.cat([input_ids, chunk], 1) if first else chunk
        kwargs: dict[str, Any] = {"memory": memory, "cache": cache, "use_cache": True,
                                  "logits_to_keep": width + (1 if first else 0)}
        state0 = memory.bias_state if counter is not None else None
        if counter is not None:  # the context of each fed token, as token-by-token feeding counts it
            if first:
                prompt_context, state0 = counter(None, input_ids)
                kwargs["bias_context"] = torch.cat([prompt_context, counter(state0, chunk)[0]], 1)
            else:
                kwargs["bias_context"] = counter(state0, chunk)[0]
        out = model(ids, torch.cat([mask, chunk_mask], 1), **kwargs)
        cache = output_cache(out)
        stats.forwards += 1
        # logits[:, j]: the choice after each row's output and its first j proposals
        logits = out.logits[:, -(width + 1):] if first else out.logits[:, -width:]
        kept = [0] * b  # columns of this round's chunk each row keeps
        live = [i for i in range(b) if not done[i]]
        offset = 0 if first else 1  # the pending token each later round feeds first
        j = 0
        while live:
            rows = torch.zeros(b, logits.shape[-1], device=device)
            for i in live:
                generated = torch.tensor([output[i]], dtype=torch.long, device=device).view(1, -1)
                rows[i] = _adjust(logits[i : i + 1, j], generated, options)[0]
            if scorer is not None:
                rows = _joint(rows, scorer, state, options)
            choice = rows.argmax(-1).tolist()
            if scorer is not None:
                active = torch.zeros(b, dtype=torch.bool, device=device)
                active[live] = True
                state = scorer.advance(state, torch.tensor(choice, device=device), active)
            still = []
            for i in live:
                y = choice[i]
                output[i].append(y)
                stats.tokens += 1
                agrees = j < len(proposals[i]) and proposals[i][j] == y
                stats.accepted += int(agrees)
                if y in eos or len(output[i]) >= limits[i]:
                    done[i] = True
                    kept[i] = offset + j + int(agrees)
                elif agrees:
                    still.append(i)
                else:  # the anchor's own token: fed first next round
                    pending[i] = y
                    kept[i] = offset + j
                    pointer[i] = _realign(output[i], drafts[i])
            live = still
            j += 1
        stats.drafted += sum(len(p) for p in proposals)
        if all(done):
            break
        keep = max(kept)
        if width > keep:
            cache.crop(keep - width)  # columns no row keeps: the cache rolls back to the longest kept
        new = torch.zeros(b, keep, dtype=mask.dtype, device=device)
        for i in range(b):
            new[i, : kept[i]] = 1
            holes |= not done[i] and kept[i] < keep
        if counter is not None:  # where each row's count goes on from: after the tokens it kept
            states = []
            for i in range(b):
                row_state = state0[i : i + 1]
                if kept[i]:
                    row_state = counter(row_state, chunk[i : i + 1, : kept[i]])[1]
                states.append(row_state)
            memory.bias_state = torch.cat(states)
        mask = torch.cat([mask, new], 1)
        first = False
    return [_strip(row, options, n) for row, n in zip(output, limits)]


def _compact(cache: Any, mask: torch.Tensor) -> torch.Tensor | None:
    """Remove each row's holes from an HF cache in place, left-padding the rows to the longest; returns the new
    attention mask (B, L'), or None for a cache whose layers are not whole key/value tensors of `mask`'s
    length (then nothing is changed)."""
    layers = getattr(cache, "layers", None)
    length = mask.shape[1]
    if not layers or not all(torch.is_tensor(getattr(layer, "keys", None)) and layer.keys.shape[2] == length
                             for layer in layers):
        return None
    valid = mask.bool()
    counts = valid.sum(1).tolist()
    width = max(counts)
    index = torch.zeros(mask.shape[0], width, dtype=torch.long, device=mask.device)
    new = torch.zeros(mask.shape[0], width, dtype=mask.dtype, device=mask.device)
    for i, n in enumerate(counts):
        index[i, width - n:] = valid[i].nonzero()[:, 0]
        new[i, width - n:] = 1
    for layer in layers:
        h, d = layer.keys.shape[1], layer.keys.shape[3]
        at = index[:, None, :, None].expand(-1, h, -1, d)
        layer.keys, layer.values = layer.keys.gather(2, at), layer.values.gather(2, at)
        if hasattr(layer, "cumulative_length"):  # a sliding-window layer counts what it has seen
            layer.cumulative_length = width
    return new


def _memory_width(memory: Any) -> int:
    """Positions a prefix model's memory puts in front of the prompt (0 for bridges, which read it aside)."""
    embeds = getattr(memory, "embeds", None)
    return int(embeds.shape[1]) if embeds is not None else 0


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
    scorer: PrefixScorer | None = None,
    stats: DecodeStats | None = None,
) -> list[list[int]]:
    """Beam search: K live hypotheses per item; finished ones scored by logprob / length ** length_penalty
    (with a prefix scorer, by the mixed score)."""
    if not options.use_cache:
        raise ValueError("beam search needs use_cache=True")
    b, k = input_ids.shape[0], options.beam_size
    device = input_ids.device
    eos = set(options.eos_token_ids)
    memory = model.encode(**towers)
    out = model(input_ids, attention_mask, memory=memory, use_cache=True, logits_to_keep=1)
    stats = stats if stats is not None else DecodeStats()
    stats.forwards += 1
    # the prompt is read once per item; its cache and the memory are then repeated for the K beams
    rows = torch.arange(b, device=device).repeat_interleave(k)
    cache = output_cache(out)
    cache.batch_repeat_interleave(k)
    if memory is not None:  # None: a prefix model given no audio
        memory.select(rows)
    mask = attention_mask[rows]
    logits = out.logits[:, -1][rows]  # (B*K, V)
    state = scorer.select(scorer.start(), rows) if scorer is not None else None
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = -float("inf")  # all K beams start equal: keep one so the first step gives K distinct ones
    generated = torch.empty(b * k, 0, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    closed = [False] * b
    for step in range(max(limits)):
        logprobs = _joint(_adjust(logits, generated, options), scorer, state, options)  # (B*K, V)
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
        if scorer is not None:
            state = scorer.advance(scorer.select(state, order), next_token.view(-1))
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = model(next_token.view(-1, 1), mask, memory=memory, cache=cache, use_cache=True)
        stats.forwards += 1
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
