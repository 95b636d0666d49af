"""Small causal LMs built from a config and trained from scratch, with the tokenizers they read.

Offline there is no small pretrained model to start m_A (or the key-value experiment's m_B) from, so these
are Llama-architecture `LlamaForCausalLM`s sized by a `SmallLMConfig`. Tokenizers are `PreTrainedTokenizerFast`s
built with the `tokenizers` library: character-level (key-value arithmetic: keys, digits and operators read
one character per token) or byte-level BPE trained on a corpus (a Telugu m_A's own tokenizer). Both save with
`save_pretrained`, so a model directory is a loadable tower or anchor (`towers.load.load_anchor`).

Special tokens are the same everywhere: <pad>=0, <bos>=1, <eos>=2, <unk>=3; encoding adds <bos> in front.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from speech_calm.schema import ConfigError


@dataclass
class SmallLMConfig:
    """A small Llama-architecture causal LM built from a config and trained from scratch (speech_calm.towers.small_lm)."""

    hidden_size: int = 128  # model width
    num_layers: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads (as many key/value heads)
    intermediate_size: int = 512  # MLP width
    max_positions: int = 512  # longest sequence the model's config allows
    tie_embeddings: bool = True  # the output head shares the input embeddings


SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


def _wrap(tok: Any) -> Any:
    """A `tokenizers.Tokenizer` as a transformers tokenizer that prepends <bos>."""
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    tok.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", SPECIALS.index("<bos>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>")


def char_tokenizer(chars: str) -> Any:
    """One token per character of `chars` (after the 4 special tokens); other characters become <unk>.

    >>> tok = char_tokenizer("0123456789+-=ab"); tok("ab+1")["input_ids"]   # [<bos>, a, b, +, 1]
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    if len(set(chars)) != len(chars):
        raise ValueError(f"characters repeat in {chars!r}")
    vocab = {t: i for i, t in enumerate([*SPECIALS, *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # every character its own token
    tok.decoder = decoders.Fuse()  # decode without spaces between characters
    return _wrap(tok)


def bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on `texts` (any script: no unknown characters)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return _wrap(tok)


def build_small_lm(cfg: SmallLMConfig, vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised Llama-architecture causal LM of `cfg`'s size over `vocab_size` tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"hidden_size {cfg.hidden_size} must divide by num_heads {cfg.num_heads}")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions, tie_word_embeddings=cfg.tie_embeddings,
        pad_token_id=SPECIALS.index("<pad>"), bos_token_id=SPECIALS.index("<bos>"),
        eos_token_id=SPECIALS.index("<eos>"),
    )
    return LlamaForCausalLM(config)


class CompactTokenizer:
    """A large tokenizer (e.g. the anchor's) restricted to the token ids a corpus uses, renumbered 0..n-1.

    A small m_A that must read the anchor's tokens (aligned mode) would otherwise spend most of its weights
    and compute on an embedding table and softmax over 262k tokens it never sees. It trains on compact ids;
    `expand_vocabulary` then gives it the full table back, so the saved model reads the anchor's ids.
    Ids outside the corpus map to <unk> (compact id 0 is reserved for it).
    """

    def __init__(self, tokenizer: Any, used_ids: Iterable[int]) -> None:
        self.base = tokenizer
        specials = [i for i in (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) if i is not None]
        self.ids = [-1] + sorted(set(used_ids) | set(specials))  # position = compact id; 0 = <unk>
        self.index = {t: c for c, t in enumerate(self.ids) if t >= 0}
        self.pad_token_id = self.index.get(tokenizer.pad_token_id, 0)
        self.bos_token_id = self.index.get(tokenizer.bos_token_id, 0)
        self.eos_token_id = self.index.get(tokenizer.eos_token_id, 0)

    def __len__(self) -> int:
        return len(self.ids)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = self.base(text, add_special_tokens=add_special_tokens)["input_ids"]
        return {"input_ids": [self.index.get(i, 0) for i in ids]}

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.base.decode([self.ids[i] for i in ids if i > 0], skip_special_tokens=skip_special_tokens)

    def get_vocab(self) -> dict[str, int]:
        full = self.base.get_vocab()
        return {t: self.index[i] for t, i in full.items() if i in self.index}


def expand_vocabulary(model: torch.nn.Module, compact: CompactTokenizer, vocab_size: int) -> torch.nn.Module:
    """A copy of `model` (trained on `compact` ids) that reads the full vocabulary: row `compact.ids[c]` of the
    new embedding is row c of the old one; every other row is the <unk> row (compact id 0)."""
    from transformers import LlamaForCausalLM

    old = model.get_input_embeddings().weight.detach()  # (n_compact, D)
    config = model.config.__class__.from_dict({**model.config.to_dict(), "vocab_size": vocab_size})
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(config, key, getattr(compact.base, key))
    big = LlamaForCausalLM(config)
    state = {k: v for k, v in model.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
    missing, _ = big.load_state_dict(state, strict=False)
    table = old[0].repeat(vocab_size, 1)  # (V, D): unknown everywhere ...
    real = torch.tensor(compact.ids[1:])
    table[real] = old[1:]  # ... but the corpus's tokens
    with torch.no_grad():
        big.get_input_embeddings().weight.copy_(table)
        if not config.tie_word_embeddings:  # an untied head gets the same treatment
            head = model.get_output_embeddings().weight.detach()
            out = head[0].repeat(vocab_size, 1)
            out[real] = head[1:]
            big.get_output_embeddings().weight.copy_(out)
    unexpected = [k for k in missing if "embed_tokens" not in k and "lm_head" not in k]
    if unexpected:
        raise RuntimeError(f"expanding the vocabulary lost weights: {unexpected[:3]}")
    return big.eval()
