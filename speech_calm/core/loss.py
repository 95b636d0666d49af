"""Loss on target tokens only: logits gathered where there are labels (a 262k head is most of a step)."""

from __future__ import annotations

from typing import Any

import torch

from speech_calm.core.batch import IGNORE_INDEX, LMBatch


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over target tokens: logits (B, K, V) for the kept positions, labels (B, K)."""
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


def output_head(anchor: torch.nn.Module) -> tuple[torch.nn.Module, float | None]:
    """The anchor's output projection and its final logit soft-capping (Gemma 2), if any."""
    head = anchor.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(anchor).__name__} has no output embeddings; a causal LM anchor is needed")
    config = getattr(anchor, "config", None)
    config = getattr(config, "get_text_config", lambda: config)()
    return head, getattr(config, "final_logit_softcapping", None)


def target_loss(hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module, softcap: float | None = None,
                vocab: torch.Tensor | None = None, closed: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy computed from the final (normed) hidden states at target tokens only.

    hidden: (B, L, D), the anchor's last entry of `hidden_states`; labels: (B, K) for the last K positions as
    `lm_batch` lays them out. Why not `logits_to_keep=K`: HF slices the last K positions of every row, a
    strided (B, K, D) view that the head multiplies as a batched matmul, padding and all. Gathering the N
    target positions first makes one contiguous (N, D) @ (D, V) product — with Gemma's 262k vocabulary the
    head is most of a training step on a CPU, and this halves it or better.

    vocab: optional sorted (V',) token ids, a closed output vocabulary: the target positions `closed` (B, K)
    bool (all when None) are scored by a softmax over those tokens only, through V' rows of the head instead
    of V (decoding must then allow only them there too: `DecodingOptions.allowed_token_ids`).
    """
    k = labels.shape[1]
    keep = labels != IGNORE_INDEX  # (B, K)
    tail = hidden[:, hidden.shape[1] - k:]
    if vocab is None:
        return _cross_entropy(head(tail[keep]), labels[keep], softcap).sum() / keep.sum()  # (N, D) contiguous
    inside = keep if closed is None else keep & closed.to(keep.device)
    closed, full = inside, keep & ~inside
    total = hidden.new_zeros((), dtype=torch.float32)
    if full.any():
        total = total + _cross_entropy(head(tail[full]), labels[full], softcap).sum()
    if closed.any():
        vocab = vocab.to(labels.device)
        wanted = labels[closed]
        local = torch.searchsorted(vocab, wanted).clamp(max=len(vocab) - 1)
        if (vocab[local] != wanted).any():
            missing = sorted(set(wanted[vocab[local] != wanted].tolist()))[:5]
            raise ValueError(f"target tokens {missing} are outside the closed output vocabulary; every target "
                             "token at a closed position must be in `vocab`")
        bias = None if head.bias is None else head.bias[vocab]
        logits = torch.nn.functional.linear(tail[closed], head.weight[vocab], bias)  # (N', V')
        total = total + _cross_entropy(logits, local, softcap).sum()
    return total / keep.sum()


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Per-token cross-entropy (N,) of logits (N, V), in fp32, after the anchor's soft-capping if it has one."""
    logits = logits.float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none")


def batch_loss(module: torch.nn.Module, batch: LMBatch, head: tuple[torch.nn.Module, float | None],
               vocab: torch.Tensor | None = None, closed: torch.Tensor | None = None,
               **inputs: Any) -> torch.Tensor:
    """`target_loss` of one forward of `module` (an anchor wrapper, composition, or their DDP wrapper) on `batch`;
    `head` from `output_head`, `vocab`/`closed` a closed output vocabulary (see `target_loss`), `inputs` the
    module's other forward arguments (tower inputs or outputs)."""
    # The anchor's own head runs on the last position only; as an index tensor (not the int 1) that position is
    # gathered contiguously and costs a plain matmul.
    last = torch.tensor([-1], device=batch.input_ids.device)
    out = module(batch.input_ids, batch.attention_mask, logits_to_keep=last, output_hidden_states=True, **inputs)
    return target_loss(out.hidden_states[-1], batch.labels, *head, vocab=vocab, closed=closed)
