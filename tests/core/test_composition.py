"""The CALM core: identity at init, frozen towers, masks, aligned causality, multi-tower, bridge checkpoints."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from speech_calm.core.bridge import (
    Bridge,
    BridgeConfig,
    BridgeMemory,
    bridge_parameter_count,
    select_connections,
)
from speech_calm.core.checkpoint import load_bridges, save_bridges
from speech_calm.core.composition import Composition
from speech_calm.schema import ConfigError
from tests import tiny
from tests.tiny import open_gates, prompt

torch.set_num_threads(2)


SPEECH_EVERY = BridgeConfig(every=1)  # 2-layer towers: connect both layers


@pytest.mark.parametrize("anchor_kind", tiny.ANCHORS)
@pytest.mark.parametrize("tower_kind", tiny.SPEECH_TOWERS + ("text_aligned",))
def test_identity_at_init(anchor_kind: str, tower_kind: str) -> None:
    anchor = tiny.anchor(anchor_kind)
    ids = prompt(2, 7)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = anchor(input_ids=ids, attention_mask=mask).logits
    if tower_kind == "text_aligned":
        model = Composition(anchor, {"lm": tiny.text_tower()}, BridgeConfig(every=1, mode="aligned"))
        inputs = None
    else:
        model = Composition(anchor, {"speech": tiny.speech_tower(tower_kind)}, SPEECH_EVERY)
        audio, lens = tiny.audio_batch([16000, 12000])
        inputs = {"speech": {"audio": audio, "audio_lens": lens}}
    with torch.no_grad():
        got = model(ids, mask, tower_inputs=inputs).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)  # a zero gate adds exactly nothing
    # the bridges do take part: with open gates the logits move
    open_gates(model)
    with torch.no_grad():
        moved = model(ids, mask, tower_inputs=inputs).logits
    assert (moved - expected).abs().max() > 1e-3


def test_anchor_state_dict_unchanged_and_no_input_is_anchor() -> None:
    anchor = tiny.anchor("llama")
    keys = list(anchor.state_dict())
    ids = prompt(2, 6)
    with torch.no_grad():
        expected = anchor(input_ids=ids).logits
    model = Composition(anchor, {"speech": tiny.speech_tower("conformer")}, SPEECH_EVERY)
    open_gates(model)
    assert list(anchor.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, expected, rtol=0, atol=0)  # no m_A input
        torch.testing.assert_close(anchor(input_ids=ids).logits, expected, rtol=0, atol=0)  # called directly


def _loss(model: Composition, ids: torch.Tensor, inputs: dict) -> torch.Tensor:
    logits = model(ids, tower_inputs=inputs).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def test_one_step_trains_bridges_only() -> None:
    model = Composition(tiny.anchor("gemma3"), {"speech": tiny.speech_tower("conformer")}, SPEECH_EVERY)
    model.train()
    towers_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("bridges.")}
    bridges_before = {k: v.clone() for k, v in model.bridge_state_dict().items()}
    params = [p for _, p in model.trainable_parameters()]
    opt = torch.optim.AdamW(params, lr=1e-2)
    audio, lens = tiny.audio_batch([16000, 9000])
    ids = prompt(2, 8)
    inputs = {"speech": {"audio": audio, "audio_lens": lens}}

    def step() -> None:
        opt.zero_grad()
        _loss(model, ids, inputs).backward()
        opt.step()

    step()
    after = model.bridge_state_dict()
    gates = [k for k in after if k.endswith("gate.scale")]
    # the zero gate is the only path with a gradient at step 0; it must move
    assert all(not torch.equal(after[k], bridges_before[k]) for k in gates)
    step()  # with the gate open, every bridge weight receives a gradient
    after = model.bridge_state_dict()
    unchanged = [k for k in after if torch.equal(after[k], bridges_before[k])]
    assert not unchanged, f"bridge parameters that did not train: {unchanged}"
    for k, v in model.state_dict().items():
        if not k.startswith("bridges."):
            assert torch.equal(v, towers_before[k]), f"frozen parameter {k} changed"
    opt_params = {id(p) for group in opt.param_groups for p in group["params"]}
    assert opt_params == {id(p) for p in model.bridges.parameters()}
    for name, p in list(model.anchor.named_parameters()) + list(model.towers.named_parameters()):
        assert not p.requires_grad and p.grad is None, name
    assert not model.anchor.training and not model.towers.training and model.bridges.training


@pytest.mark.parametrize("tower_kind", ["conformer", "wav2vec2"])
def test_padding_item_alone_equals_item_in_batch(tower_kind: str) -> None:
    model = Composition(tiny.anchor("llama"), {"speech": tiny.speech_tower(tower_kind)},
                        BridgeConfig(every=1, frame_stack=2))
    open_gates(model)
    audio, lens = tiny.audio_batch([16000, 7000])
    ids = prompt(2, 9)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # item 1: a shorter prompt, left-padded
    with torch.no_grad():
        batch = model(ids, mask, tower_inputs={"speech": {"audio": audio, "audio_lens": lens}}).logits
        alone = model(ids[1:, 4:], tower_inputs={"speech": {"audio": audio[1:, :7000], "audio_lens": lens[1:]}}).logits
    torch.testing.assert_close(batch[1, 4:], alone[0], rtol=1e-4, atol=1e-4)


def test_aligned_mode_is_causal() -> None:
    model = Composition(tiny.anchor("qwen2"), {"lm": tiny.text_tower()}, BridgeConfig(every=1, mode="aligned"))
    open_gates(model)
    ids = prompt(1, 10)
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 5) % tiny.VOCAB
    # feed m_A the changed tokens while the anchor reads the original ones: same-token reading is what
    # aligned mode does, so patch the tower to read `changed`
    tower = model.towers["lm"]
    original_forward = tower.forward

    def reads_changed(input_ids, **kw):  # noqa: ANN001, ANN003, ANN202
        return original_forward(changed[:, : input_ids.shape[1]], **kw)

    with torch.no_grad():
        base = model(ids).logits
        tower.forward = reads_changed
        try:
            after = model(ids).logits
        finally:
            tower.forward = original_forward
    torch.testing.assert_close(after[0, :6], base[0, :6], rtol=0, atol=0)  # positions <= 5 unchanged
    assert (after[0, 6:] - base[0, 6:]).abs().max() > 1e-4  # later ones do see m_A


@pytest.mark.parametrize("extra", [{}, {"window": 1, "null_slot": True}])
def test_aligned_mode_padding(extra: dict) -> None:
    model = Composition(tiny.anchor("llama"), {"lm": tiny.text_tower()},
                        BridgeConfig(every=1, mode="aligned", **extra))
    open_gates(model)
    ids = prompt(2, 8)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    with torch.no_grad():
        batch = model(ids, mask).logits
        alone = model(ids[:1, 3:]).logits
    assert torch.isfinite(batch).all()
    torch.testing.assert_close(batch[0, 3:], alone[0], rtol=1e-4, atol=1e-4)


def bridge_with_memory(seq: int = 6, **kw) -> tuple[Bridge, BridgeMemory, torch.Tensor]:  # noqa: ANN003
    """A bridge (D_A 8, D_B 16, 2 heads) with an open gate, its memory over `seq` random m_A states, and anchor
    states (1, seq, 16)."""
    torch.manual_seed(0)
    bridge = Bridge(8, 16, 2, BridgeConfig(**kw))
    with torch.no_grad():
        bridge.gate.scale.fill_(0.7)
    memory = bridge.memory(torch.randn(1, seq, 8), torch.ones(1, seq, dtype=torch.bool))
    return bridge, memory, torch.randn(1, seq, 16)


@pytest.mark.parametrize("window", [1, 3])
def test_aligned_window_reads_only_the_last_positions(window: int) -> None:
    bridge, memory, hidden = bridge_with_memory(window=window)
    positions = torch.arange(6)
    with torch.no_grad():
        base = bridge(hidden, memory, positions)
        for s in range(6):  # change m_A's state at position s alone: query t moves iff t-window < s <= t
            value = memory.value.clone()
            value[:, :, s] += 1.0
            moved = (bridge(hidden, BridgeMemory(memory.key, value, memory.mask), positions) - base).abs()
            moved = moved.amax(-1)[0] > 1e-6  # (T,)
            assert moved.tolist() == [s <= t < s + window for t in range(6)]


def test_null_slot_lets_a_query_read_nothing() -> None:
    bridge, memory, hidden = bridge_with_memory(window=1, null_slot=True)
    positions = torch.arange(6)
    with torch.no_grad():
        reads = bridge(hidden, memory, positions)
        assert reads.abs().amax() > 1e-3  # logit 0 for the null key at init: m_A's state still gets through
        # a query aligned with the null key puts (nearly) all its weight there: the update vanishes, per query
        q = bridge._heads(bridge.q(bridge.norm_query(hidden)))  # (1, H, T, d); this bridge has no anchor norm
        bridge.null_key.copy_(50 * q[0, :, :1])  # (H, 1, d): query 0's own direction, a large logit
        silent = bridge(hidden, memory, positions)
    assert silent[0, 0].abs().amax() < 1e-4 * reads[0, 0].abs().amax()
    with torch.no_grad():  # no visible m_A position at all: exactly 0 (not the null slot's share of nothing)
        nothing = bridge(hidden, BridgeMemory(memory.key, memory.value, torch.zeros(1, 6, dtype=torch.bool)),
                         positions)
    assert torch.equal(nothing, torch.zeros_like(nothing))


def test_null_slot_is_not_in_the_recorded_attention() -> None:
    model = Composition(tiny.anchor("llama"), {"speech": tiny.speech_tower("conformer")},
                        BridgeConfig(every=1, null_slot=True))
    open_gates(model)
    audio, lens = tiny.audio_batch([16000, 12000])
    with torch.no_grad(), model.record_attention() as records:
        model(prompt(2, 5), tower_inputs={"speech": {"audio": audio, "audio_lens": lens}})
    memory = model.encode({"speech": {"audio": audio, "audio_lens": lens}}).towers["speech"].bridges[0]
    probs = records["speech"][0][0]  # (B, H, T, S): m_A's positions only
    assert probs.shape[-1] == memory.mask.shape[1]
    assert (probs.sum(-1) < 1 - 1e-3).any()  # the null slot took some of the weight


def test_window_errors() -> None:
    with pytest.raises(ConfigError, match="bridge.window must be >= 1"):
        Composition(tiny.anchor("llama"), {"lm": tiny.text_tower()}, BridgeConfig(every=1, mode="aligned", window=0))
    with pytest.raises(ConfigError, match="bridge.window needs bridge.mode=aligned"):
        Composition(tiny.anchor("llama"), {"s": tiny.speech_tower("conformer")}, BridgeConfig(every=1, window=2))


def test_score_bias_hook_adds_the_callers_scores() -> None:
    """The core's generic hook: a bridge asks its score bias for additive scores from the query, the memory's
    slot positions and each query's context; a bias that prefers one slot moves attention there, and the
    bridge refuses to run without positions or context."""
    seen = []

    def scores(bridge: Bridge, query: torch.Tensor, memory: BridgeMemory, context: torch.Tensor) -> torch.Tensor:
        seen.append((memory.positions, context))
        # (B, H, T, S): +30 on the slot whose position equals the query's context
        hit = memory.positions[:, None, None, :] == context[:, None, :, None]
        return 30.0 * hit.float().expand(-1, bridge.num_heads, -1, -1)

    def factory(bridge: Bridge):  # noqa: ANN202 - a ScoreBiasFactory
        return scores

    torch.manual_seed(0)
    bridge = Bridge(8, 16, 2, score_bias=factory)
    calls: list[torch.Tensor] = []
    bridge.record = calls.append
    positions = torch.tensor([[0, 1, 2, 3, 4]])
    memory = bridge.memory(torch.randn(1, 5, 8), torch.ones(1, 5, dtype=torch.bool), positions)
    context = torch.tensor([[3.0, 0.0]])
    with torch.no_grad():
        bridge(torch.randn(1, 2, 16), memory, bias_context=context)
    assert torch.equal(seen[0][0], positions) and torch.equal(seen[0][1], context)
    assert calls[0][0].argmax(-1).tolist() == [[3, 0], [3, 0]]  # (H, T): every head at the chosen slot
    with pytest.raises(ConfigError, match="score bias needs m_A states with positions"):
        bridge.memory(torch.randn(1, 5, 8), torch.ones(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="give the context of each query"):
        bridge(torch.randn(1, 2, 16), memory)


def test_two_towers_augment_one_anchor() -> None:
    anchor = tiny.anchor("gemma3")
    model = Composition(
        anchor, {"speech": tiny.speech_tower("conformer"), "telugu": tiny.text_tower()},
        {"speech": BridgeConfig(every=1, frame_stack=2), "telugu": BridgeConfig(pairs=[(1, 0)], mode="aligned")},
    )
    assert model.connections == {"speech": [(0, 0), (1, 1)], "telugu": [(1, 0)]}
    assert len(model.bridges["speech"]) == 2 and len(model.bridges["telugu"]) == 1
    ids = prompt(2, 6)
    audio, lens = tiny.audio_batch([8000, 8000])
    speech = {"speech": {"audio": audio, "audio_lens": lens}}
    with torch.no_grad():
        plain = anchor(input_ids=ids).logits
        torch.testing.assert_close(model(ids, tower_inputs=speech).logits, plain)
        open_gates(model)
        both = model(ids, tower_inputs=speech).logits
        for name in ("speech", "telugu"):  # each tower contributes: closing its gates changes the output
            for bridge in model.bridges[name]:
                bridge.gate.scale.zero_()
            without = model(ids, tower_inputs=speech).logits
            assert (without - both).abs().max() > 1e-4, name
            open_gates(model)


def test_bridge_checkpoint_round_trip(tmp_path) -> None:  # noqa: ANN001
    def build(seed: int) -> Composition:
        torch.manual_seed(seed)
        return Composition(tiny.anchor("gpt2"), {"speech": tiny.speech_tower("conformer")}, SPEECH_EVERY)

    model = build(0)
    open_gates(model, 0.3)
    path = tmp_path / "bridges.safetensors"
    save_bridges(model, path)
    saved = load_file(str(path))
    assert set(saved) == set(model.bridge_state_dict())
    assert all(k.split(".")[0] == "speech" for k in saved)  # bridges only: no anchor or tower tensor
    n_bridge = sum(p.numel() for p in model.bridges.parameters())
    assert sum(v.numel() for v in saved.values()) == n_bridge
    other = build(1)  # other random bridges
    other.anchor.load_state_dict(model.anchor.state_dict())
    other.towers.load_state_dict(model.towers.state_dict())
    load_bridges(other, path)
    ids = prompt(2, 5)
    audio, lens = tiny.audio_batch([8000, 6000])
    inputs = {"speech": {"audio": audio, "audio_lens": lens}}
    with torch.no_grad():
        torch.testing.assert_close(other(ids, tower_inputs=inputs).logits, model(ids, tower_inputs=inputs).logits,
                                   rtol=0, atol=0)


def test_bridge_parameter_count_matches_formula() -> None:
    model = Composition(tiny.anchor("llama"), {"speech": tiny.speech_tower("conformer")}, SPEECH_EVERY)
    d_a, d_b = 32, 32
    per_bridge = 2 * d_a + (d_a * d_b + d_b) + 2 * d_b + 4 * d_b * d_b + 1  # norms, proj, q/k/v/o, gate
    assert sum(p.numel() for p in model.bridges.parameters()) == 2 * per_bridge
    with_null = Composition(tiny.anchor("llama"), {"speech": tiny.speech_tower("conformer")},
                            BridgeConfig(every=1, null_slot=True))
    assert sum(p.numel() for p in with_null.bridges.parameters()) == 2 * (per_bridge + d_b)  # one key per head
    assert bridge_parameter_count(tiny.speech_tower("conformer"), tiny.anchor("llama"),
                                  BridgeConfig(every=1, null_slot=True), "speech") == 2 * (per_bridge + d_b)


# ------------------------------------------------------------------------------------------------ layer choice


def test_select_connections_every_pairs() -> None:
    assert select_connections(12, 18, BridgeConfig(every=4)) == [(3, 5), (7, 11), (11, 17)]
    assert select_connections(8, 4, BridgeConfig(every=4)) == [(3, 1), (7, 3)]
    assert select_connections(8, 4, BridgeConfig(pairs=[(0, 3), (5, 1)])) == [(0, 3), (5, 1)]


@pytest.mark.parametrize(
    "cfg, message",
    [
        (BridgeConfig(pairs=[(12, 0)]), "names layer 12 of tower 'speech', which has 12 layers"),
        (BridgeConfig(pairs=[(0, 18)]), "anchor layer 18, but the anchor has 18 layers"),
        (BridgeConfig(every=16), "selects no layer"),
        (BridgeConfig(every=1), "bridge.every=1 selects 12 layers"),
        (BridgeConfig(pairs=[(1, 1), (1, 1)]), "repeat"),
    ],
)
def test_select_connections_errors(cfg: BridgeConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        select_connections(12, 18 if cfg.every != 1 else 6, cfg, "speech")


def test_layer_past_depth_fails_at_build() -> None:
    with pytest.raises(ConfigError, match="valid: 0..1"):
        Composition(tiny.anchor("llama"), {"speech": tiny.speech_tower("conformer")}, BridgeConfig(pairs=[(0, 5)]))


def test_aligned_mode_with_other_vocabulary_fails() -> None:
    with pytest.raises(ConfigError, match="same tokens.*vocabulary of 99 and the anchor 128"):
        Composition(tiny.anchor("llama"), {"lm": tiny.text_tower(vocab=99)}, BridgeConfig(mode="aligned", every=1))


def test_aligned_mode_with_speech_tower_fails() -> None:
    with pytest.raises(ConfigError, match="aligned mode needs a text tower"):
        Composition(tiny.anchor("llama"), {"s": tiny.speech_tower("conformer")}, BridgeConfig(mode="aligned", every=1))


def test_heads_must_divide_width() -> None:
    with pytest.raises(ConfigError, match="does not divide the anchor width 32"):
        Composition(tiny.anchor("llama"), {"s": tiny.speech_tower("conformer")}, BridgeConfig(every=1, num_heads=5))


@pytest.mark.parametrize("anchor_kind", tiny.ANCHORS)
def test_target_loss_equals_loss_over_kept_logits(anchor_kind: str) -> None:
    """The training loss from gathered target positions is the loss over HF's `logits_to_keep` logits."""
    from speech_calm.core.batch import lm_batch
    from speech_calm.core.loss import lm_loss, output_head, target_loss

    model = Composition(tiny.anchor(anchor_kind), {"speech": tiny.speech_tower("conformer")}, SPEECH_EVERY)
    open_gates(model)
    audio, lens = tiny.audio_batch([16000, 9000, 12000])
    inputs = {"speech": {"audio": audio, "audio_lens": lens}}
    batch = lm_batch([[5, 6, 7], [8, 9], [10, 11, 12, 13]], [[20, 21, 22, 23], [24], [25, 26]], pad_id=0)
    full = model(batch.input_ids, batch.attention_mask, tower_inputs=inputs, logits_to_keep=batch.logits_to_keep)
    expected = lm_loss(full.logits, batch.labels)
    out = model(batch.input_ids, batch.attention_mask, tower_inputs=inputs, logits_to_keep=1,
                output_hidden_states=True)
    got = target_loss(out.hidden_states[-1], batch.labels, *output_head(model.anchor))
    torch.testing.assert_close(got, expected)


def test_target_loss_over_a_closed_vocabulary() -> None:
    """Target positions scored over a closed vocabulary get the cross-entropy of a softmax over those tokens'
    logits only (the full head's logits, other columns dropped); other positions keep the full softmax; the
    mean runs over all target tokens. A target outside the closed vocabulary is an error, not a wrong loss."""
    from speech_calm.core.batch import lm_batch
    from speech_calm.core.loss import output_head, target_loss

    model = Composition(tiny.anchor("gemma3"), {"speech": tiny.speech_tower("conformer")}, SPEECH_EVERY)
    open_gates(model)
    audio, lens = tiny.audio_batch([16000, 9000, 12000])
    inputs = {"speech": {"audio": audio, "audio_lens": lens}}
    vocab = torch.tensor([3, 20, 21, 22, 23, 25, 26, 40])
    batch = lm_batch([[5, 6, 7], [8, 9], [10, 11, 12, 13]], [[20, 21, 22, 23], [24], [25, 26]], pad_id=0)
    closed = torch.zeros(batch.labels.shape, dtype=torch.bool)
    closed[0], closed[2, :-2] = True, True  # row 0 closed, row 1 open, row 2 half: [25] closed, [26] open
    out = model(batch.input_ids, batch.attention_mask, tower_inputs=inputs, output_hidden_states=True)
    logits = out.logits[:, -batch.labels.shape[1]:]  # (B, K, V)
    keep = batch.labels != -100
    terms = []
    for b, k in keep.nonzero().tolist():
        target = int(batch.labels[b, k])
        if closed[b, k]:
            terms.append(-logits[b, k, vocab].log_softmax(-1)[vocab.tolist().index(target)])
        else:
            terms.append(-logits[b, k].log_softmax(-1)[target])
    got = target_loss(out.hidden_states[-1], batch.labels, *output_head(model.anchor), vocab=vocab,
                      closed=closed)
    torch.testing.assert_close(got, torch.stack(terms).mean())
    full = target_loss(out.hidden_states[-1], batch.labels, *output_head(model.anchor))
    assert got < full  # the same targets, fewer competitors
    with pytest.raises(ValueError, match=r"target tokens \[24\] are outside the closed output vocabulary"):
        target_loss(out.hidden_states[-1], batch.labels, *output_head(model.anchor), vocab=vocab)


@pytest.mark.parametrize("anchor_kind", tiny.ANCHORS)
def test_queries_read_through_the_anchors_own_norms(anchor_kind: str) -> None:
    """Each bridge borrows the norm through which the anchor reads its layer: the next layer's input norm, or
    the final norm after the last layer. Borrowed, not owned: no norm weights among the bridge weights."""
    anchor = tiny.anchor(anchor_kind)
    model = Composition(anchor, {"speech": tiny.speech_tower("conformer")}, BridgeConfig(pairs=[(0, 0), (1, 1)]))
    base = anchor.transformer if anchor_kind == "gpt2" else anchor.model
    layers = base.h if anchor_kind == "gpt2" else base.layers
    expected = [layers[1].ln_1 if anchor_kind == "gpt2" else layers[1].input_layernorm,
                base.ln_f if anchor_kind == "gpt2" else base.norm]
    assert [b._anchor_norm[0] for b in model.bridges["speech"]] == expected
    plain = Composition(tiny.anchor(anchor_kind), {"speech": tiny.speech_tower("conformer")},
                        BridgeConfig(pairs=[(0, 0), (1, 1)], anchor_norm=False))
    assert model.bridge_state_dict().keys() == plain.bridge_state_dict().keys()
    assert all(b._anchor_norm == () for b in plain.bridges["speech"])
