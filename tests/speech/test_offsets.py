"""The speech path's score bias: each head of a bridge reads m_A's slots by their offset to the characters
written (`speech_calm.speech.offsets`), through the core's generic score-bias hook."""

from __future__ import annotations

import pytest
import torch

from speech_calm.core.bridge import Bridge, BridgeMemory
from speech_calm.schema import ConfigError
from speech_calm.speech.config import ComposeStageConfig, SpeechBridgeConfig
from speech_calm.speech.model import build_composition
from speech_calm.speech.offsets import CharacterCount, OffsetPrior
from tests import tiny


def offset_bridge() -> tuple[Bridge, BridgeMemory, torch.Tensor]:
    """A 4-head bridge with `offset_bias` and zero queries (content plays no part), its memory over 9 slots
    at character positions -1..10 (odd: pauses), and anchor states (1, 3, 16)."""
    torch.manual_seed(0)
    bridge = Bridge(8, 16, 4, score_bias=OffsetPrior(4))
    with torch.no_grad():
        bridge.q.weight.zero_()
        bridge.gate.scale.fill_(0.7)
    chars = torch.tensor([[-1, 0, 1, 2, 4, 6, 7, 8, 10]])  # characters 0..5 at slots 1, 3, 4, 5, 7, 8
    memory = bridge.memory(torch.randn(1, 9, 8), torch.ones(1, 9, dtype=torch.bool), chars)
    return bridge, memory, torch.randn(1, 3, 16)


def test_offset_bias_points_each_head_at_its_character() -> None:
    bridge, memory, hidden = offset_bridge()
    calls: list[torch.Tensor] = []
    bridge.record = calls.append
    written = torch.tensor([[2.0, 3.0, 1.0]])
    with torch.no_grad():
        bridge(hidden, memory, bias_context=written)
    slot_of_char = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7, 5: 8}
    best = calls[0][0].argmax(-1)  # (H, T)
    for t, w in enumerate(written[0].tolist()):  # head h peaks at character written + h - 1
        assert best[:, t].tolist() == [slot_of_char[int(w) + h - 1] for h in range(4)]
    # the gate decides per query how much position counts: shut, attention is uniform again
    with torch.no_grad():
        bridge.offset_gate.bias.fill_(-30.0)
        bridge(hidden, memory, bias_context=written)
    torch.testing.assert_close(calls[1], torch.full_like(calls[1], 1 / 9))


def test_offset_bias_reads_the_memory_in_order_as_characters_are_written() -> None:
    bridge, memory, hidden = offset_bridge()
    with torch.no_grad():
        early = bridge(hidden, memory, bias_context=torch.zeros(1, 3))
        value = memory.value.clone()
        value[:, :, 8] += 1.0  # character 5: far from a query that has written nothing, next for one at 5
        changed = BridgeMemory(memory.key, value, memory.mask, memory.positions)
        moved_early = (bridge(hidden, changed, bias_context=torch.zeros(1, 3)) - early).abs().amax()
        late = bridge(hidden, memory, bias_context=torch.full((1, 3), 5.0))
        moved_late = (bridge(hidden, changed, bias_context=torch.full((1, 3), 5.0)) - late).abs().amax()
    assert moved_late > 50 * moved_early  # a prior, not a mask: far slots still count a little


def test_offset_bias_errors() -> None:
    with pytest.raises(ConfigError, match="offset_bias must be >= 1"):
        OffsetPrior(0)
    for cfg in (ComposeStageConfig(bridge=SpeechBridgeConfig(every=1, offset_bias=2)),  # no character positions
                ComposeStageConfig(compress="ctc", bridge=SpeechBridgeConfig(every=1, frame_stack=2, offset_bias=2))):
        with pytest.raises(ConfigError, match="needs m_A states with character positions"):
            build_composition(tiny.anchor("llama"), tiny.speech_tower("conformer"), cfg)
    bridge, memory, hidden = offset_bridge()
    with pytest.raises(ValueError, match="give the context of each query"):
        bridge(hidden, memory)


def test_offset_parameters_keep_their_names_and_the_gates_learning_rate() -> None:
    """Saved run directories name these tensors `offset_bias` and `offset_gate.*` on each bridge."""
    from speech_calm.core.optim import OptimConfig, param_groups

    bridge = Bridge(8, 16, 4, score_bias=OffsetPrior(4))
    names = [n for n, _ in bridge.named_parameters()]
    assert names[0] == "offset_bias" and names[-2:] == ["offset_gate.weight", "offset_gate.bias"]
    assert bridge.offset_bias.shape == (4, 17)
    groups = param_groups(dict(bridge.named_parameters()), OptimConfig(gate_lr_scale=10.0))
    gates = next(g for g in groups if g["lr_scale"] == 10.0)["params"]
    assert [tuple(p.shape) for p in gates] == [(4, 17), (1,)]  # the prior's table and the bridge's tanh gate


def test_character_count_continues_across_calls() -> None:
    """The prompt writes nothing; then each token adds its characters, from `start` on, never below 0."""
    count = CharacterCount(torch.tensor([0.0, 1.0, 2.0, 3.0]), start=-1)
    context, state = count(None, torch.tensor([[1, 2, 3]]))
    assert context.tolist() == [[0, 0, 0]] and state.tolist() == [-1]
    context, state = count(state, torch.tensor([[2, 1]]))
    assert context.tolist() == [[1, 2]] and state.tolist() == [2]


def test_a_copied_bridge_scores_with_its_own_offset_parameters() -> None:
    """The bias is handed its bridge at every call: a deep copy (an EMA, a frozen reference) reads its own
    tables, and keeps their place in the gates' group."""
    import copy

    from speech_calm.core.optim import GateParameter

    bridge, memory, hidden = offset_bridge()
    twin = copy.deepcopy(bridge)
    context = torch.tensor([[2.0, 3.0, 1.0]])
    with torch.no_grad():
        twin.offset_gate.bias.fill_(-30.0)  # the twin's prior is off; the original's is not
        assert not torch.allclose(twin(hidden, memory, bias_context=context), bridge(hidden, memory, bias_context=context))
    assert isinstance(twin.offset_bias, GateParameter) and isinstance(twin.gate.scale, GateParameter)


def test_uncached_decoding_with_a_score_bias_is_refused() -> None:
    """Without the cache every step would feed the whole sequence as a prompt, so every query's character count
    would read 0: refused, with what to do."""
    from speech_calm.core.decoding import DecodingOptions, generate

    model = build_composition(tiny.anchor("llama"), tiny.speech_tower("conformer"),
                              ComposeStageConfig(compress="ctc", bridge=SpeechBridgeConfig(every=1, offset_bias=2)))
    audio, lens = tiny.audio_batch([16000])
    with pytest.raises(ValueError, match="decode with use_cache=True"):
        generate(model, tiny.prompt(1, 4), None, {"speech": {"audio": audio, "audio_lens": lens}},
                 DecodingOptions(max_new_tokens=3, use_cache=False))


def test_continued_count_gives_written_tokens_the_count_they_had_while_written() -> None:
    """A search that continues rows written earlier (a chained transcript, then the English marker) counts
    those tokens as the first search did, left padding included, then counts on."""
    count = CharacterCount(torch.tensor([0.0, 1.0, 2.0, 3.0]), start=-1)
    written = [[1, 2, 3], [2]]
    prompt = torch.tensor([[0, 0, 1, 2, 3], [0, 0, 0, 0, 2]])  # 2 prompt tokens, then each row's written tokens
    context, state = count.after(written)(None, prompt)
    for row, ids in enumerate(written):  # what token-by-token decoding counted after the prompt
        _, s = count(None, prompt[row:row + 1, :1])
        want = []
        for token in ids:
            c, s = count(s, torch.tensor([[token]]))
            want.append(float(c[0, 0]))
        assert context[row, -len(ids):].tolist() == want
        assert context[row, : prompt.shape[1] - len(ids)].tolist() == [0.0] * (prompt.shape[1] - len(ids))
        assert float(state[row]) == float(s[0])
    more, _ = count.after(written)(state, torch.tensor([[3], [1]]))
    assert more[:, 0].tolist() == [float(state[0]) + 3, float(state[1]) + 1]
