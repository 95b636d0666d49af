"""Tests of speech_calm.towers.conformer: the Conformer-CTC speech encoder (tiny configs, CPU, no downloads)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from speech_calm.core.tower import AugmentingTower
from speech_calm.towers.conformer import (
    ConformerConfig,
    ConformerEncoder,
    SpecAugment,
    _conformer_layer,
    ctc_greedy_decode,
)
from speech_calm.towers.vocab import BLANK_ID, CharVocab

SR = 16000
TEXTS = ["అఆ", "ఆఇఅ", "ఇఅ"]  # transcripts of the synthetic clips below


def tiny_config(**overrides) -> ConformerConfig:
    """2 layers, width 32; a 7-frame depthwise kernel so a padding leak would reach 3 real frames."""
    fields = dict(d_model=32, num_heads=2, ffn_dim=64, num_layers=2, subsampling_channels=8,
                  depthwise_kernel_size=7)
    fields.update(overrides)
    return ConformerConfig(**fields)


@pytest.fixture
def vocab() -> CharVocab:
    return CharVocab.build(TEXTS)


@pytest.fixture
def model(vocab: CharVocab) -> ConformerEncoder:
    torch.manual_seed(0)
    return ConformerEncoder(tiny_config(), vocab).eval()


def padded_batch(lengths: list[int], pad_noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, max(lengths)) random audio; the padding holds loud noise when pad_noise > 0 (to expose leaks)."""
    gen = torch.Generator().manual_seed(1)
    total = max(lengths)
    audio = pad_noise * torch.randn(len(lengths), total, generator=gen)
    for b, n in enumerate(lengths):
        audio[b, :n] = 0.1 * torch.randn(n, generator=gen)
    return audio, torch.tensor(lengths)


def expected_frames(samples: int, layout: list[tuple[int, int]]) -> int:
    """Output frames computed independently: 25 ms / 10 ms framing without centring, then valid convs."""
    frames = (samples - 400) // 160 + 1
    for kernel, stride in layout:
        frames = (frames - kernel) // stride + 1
    return frames


def test_tower_interface_and_shapes(model: ConformerEncoder) -> None:
    assert isinstance(model, AugmentingTower)
    assert (model.modality, model.num_layers, model.hidden_size) == ("speech", 2, 32)
    audio, lens = padded_batch([16000, 12000, 8000])
    with torch.no_grad():
        out = model(audio, lens)
    assert len(out.hidden_states) == model.num_layers
    for h in out.hidden_states:
        assert h.shape == (3, out.mask.shape[1], 32)
        assert not h.requires_grad
    assert out.mask.dtype == torch.bool and out.mask.shape == (3, 23)
    # Layers are distinct computations, not one tensor repeated.
    assert not torch.equal(out.hidden_states[0], out.hidden_states[1])


@pytest.mark.parametrize(
    "subsampling, layout, rate",
    [(4, [(3, 2), (3, 2)], 25.0), (6, [(3, 2), (5, 3)], 100 / 6), (8, [(3, 2)] * 3, 12.5)],
)
def test_mask_lengths_match_subsampling(vocab: CharVocab, subsampling: int, layout, rate: float) -> None:
    model = ConformerEncoder(tiny_config(subsampling=subsampling), vocab).eval()
    lengths = [16000, 11111, 4000, model.min_samples]
    audio, lens = padded_batch(lengths)
    with torch.no_grad():
        out = model(audio, lens)
    expected = [expected_frames(n, layout) for n in lengths]
    assert out.mask.sum(dim=1).tolist() == expected
    assert model.output_lengths(lens).tolist() == expected
    assert out.mask.shape[1] == max(expected)
    # The mask is a prefix of real frames, and the shortest allowed clip gives exactly one frame.
    assert torch.equal(out.mask, torch.arange(out.mask.shape[1])[None, :] < torch.tensor(expected)[:, None])
    assert expected[-1] == 1 and expected_frames(model.min_samples - 1, layout) == 0
    assert model.frame_rate_hz == pytest.approx(rate)


@pytest.mark.parametrize("subsampling", [4, 6])
def test_padded_item_equals_item_alone(vocab: CharVocab, subsampling: int) -> None:
    torch.manual_seed(0)
    model = ConformerEncoder(tiny_config(subsampling=subsampling), vocab)
    # Non-trivial BatchNorm running statistics, so eval-mode normalisation matters.
    with torch.no_grad():
        model.train()
        model(*padded_batch([16000, 9000]))
    model.eval()
    lengths = [16000, 9000, 5000]
    audio, lens = padded_batch(lengths, pad_noise=1.0)  # loud noise in the padding
    with torch.no_grad():
        batch = model(audio, lens)
        for b, n in enumerate(lengths):
            alone = model(audio[b : b + 1, :n])
            frames = alone.mask.shape[1]
            assert int(batch.mask[b].sum()) == frames
            for layer, (hb, ha) in enumerate(zip(batch.hidden_states, alone.hidden_states)):
                torch.testing.assert_close(hb[b, :frames], ha[0], msg=f"item {b}, layer {layer}")
                assert torch.all(hb[b, frames:] == 0), "padded frames must be exactly zero"


def test_padding_changes_nothing_in_train_mode(vocab: CharVocab) -> None:
    """BatchNorm batch statistics (and running averages) are taken over real frames only."""
    torch.manual_seed(0)
    model = ConformerEncoder(tiny_config(dropout=0.0, freq_masks=0, time_masks=0), vocab).train()
    twin = ConformerEncoder(tiny_config(dropout=0.0, freq_masks=0, time_masks=0), vocab).train()
    twin.load_state_dict(model.state_dict())
    audio, lens = padded_batch([16000, 9000])
    padded = torch.cat([audio, torch.randn(2, 8000)], dim=1)  # same items, 0.5 s more (noisy) padding
    out, out_padded = model(audio, lens), twin(padded, lens)
    frames = out.mask.shape[1]
    for h, hp in zip(out.hidden_states, out_padded.hidden_states):
        torch.testing.assert_close(hp[:, :frames], h)
    for name, stat in model.state_dict().items():
        if "running" in name:
            torch.testing.assert_close(twin.state_dict()[name], stat, msg=name)


def test_layer_matches_torchaudio_without_padding(model: ConformerEncoder) -> None:
    """`_conformer_layer` is torchaudio's ConformerLayer.forward plus masking: with no padding they agree."""
    layer = model.conformer.conformer_layers[0]
    x = torch.randn(2, 17, 32)  # (B, S, D)
    no_pad = torch.zeros(2, 17, dtype=torch.bool)
    with torch.no_grad():
        ours = _conformer_layer(layer, x, no_pad)
        theirs = layer(x.transpose(0, 1), None).transpose(0, 1)  # torchaudio layout (S, B, D)
    torch.testing.assert_close(ours, theirs)


def test_spec_augment_only_in_train_mode(model: ConformerEncoder) -> None:
    frontend = model.frontend
    audio, lens = padded_batch([16000, 8000])
    frontend.eval()
    clean, frame_lens = frontend(audio, lens)
    again, _ = frontend(audio, lens)
    assert torch.equal(clean, again), "eval features must be deterministic"
    # Per-utterance normalisation: zero mean, unit variance per mel channel over real frames.
    n = int(frame_lens[1])
    torch.testing.assert_close(clean[1, :n].mean(0), torch.zeros(clean.shape[2]), atol=1e-4, rtol=0)
    torch.testing.assert_close(clean[1, :n].std(0, unbiased=False), torch.ones(clean.shape[2]), atol=1e-3,
                               rtol=0)
    frontend.train()
    torch.manual_seed(3)
    augmented, _ = frontend(audio, lens)
    changed = augmented != clean
    assert changed.any(), "SpecAugment must change features in train mode"
    assert torch.all(augmented[changed] == 0), "masked values are set to 0"
    # The encoder switches it with its own mode.
    model.eval()
    assert not model.frontend.spec_augment.training


def test_spec_augment_masks_stay_inside_each_utterance() -> None:
    """Time masks are drawn within an item's real frames, at most 5% of its length each; frequency masks
    are at most freq_mask_width channels each."""
    spec_augment = SpecAugment(ConformerConfig(freq_masks=1, freq_mask_width=10, time_masks=2,
                                               time_mask_width=40, time_mask_max_ratio=0.05)).train()
    feats = torch.ones(2, 1000, 80)  # (B, F, n_mels); ones everywhere, so masks show up even in padding
    frame_lens = torch.tensor([1000, 400])
    torch.manual_seed(0)
    hit_short_item = 0
    for _ in range(50):
        zero = spec_augment(feats, frame_lens) == 0
        time_masked = zero.all(dim=2)  # (B, F): frames masked across every channel
        freq_masked = zero.all(dim=1)  # (B, n_mels)
        assert not time_masked[1, 400:].any(), "a time mask fell into padding"
        assert time_masked[1].sum() <= 2 * 20 and time_masked[0].sum() <= 2 * 40
        assert freq_masked.sum(dim=1).max() <= 10
        hit_short_item += int(time_masked[1].any())
    assert hit_short_item >= 25, "short items must get time masks too"


def test_features_stay_float32_when_the_model_is_cast(model: ConformerEncoder) -> None:
    audio, lens = padded_batch([16000, 8000])
    reference, _ = model.frontend(audio, lens)
    model.to(torch.bfloat16)
    assert model.frontend.fbank.dtype == torch.float32 and model.ctc_head.weight.dtype == torch.bfloat16
    features, _ = model.frontend(audio, lens)
    assert torch.equal(features, reference)
    with torch.no_grad():
        out = model(audio, lens)
    assert out.hidden_states[-1].dtype == torch.bfloat16 and torch.isfinite(out.hidden_states[-1]).all()


def tone_clip(text: str, seconds_per_char: float = 0.2) -> torch.Tensor:
    """Synthetic speech: each character is a distinct sound (two tones or noise), with short silences."""
    t = torch.arange(int(SR * seconds_per_char)) / SR
    sounds = {
        "అ": 0.3 * torch.sin(2 * math.pi * 300 * t),
        "ఆ": 0.3 * torch.sin(2 * math.pi * 2500 * t),
        "ఇ": 0.1 * torch.randn(len(t), generator=torch.Generator().manual_seed(7)),
    }
    gap = torch.zeros(int(SR * 0.05))
    return torch.cat([gap] + [torch.cat([sounds[ch], gap]) for ch in text])


def test_ctc_overfits_one_batch_and_decodes_it(vocab: CharVocab) -> None:
    torch.manual_seed(0)
    config = tiny_config(dropout=0.0, freq_masks=0, time_masks=0)
    model = ConformerEncoder(config, vocab).train()
    clips = [tone_clip(text) for text in TEXTS]
    lens = torch.tensor([len(c) for c in clips])
    audio = torch.zeros(len(clips), int(lens.max()))
    for b, clip in enumerate(clips):
        audio[b, : len(clip)] = clip
    targets, target_lens = vocab.encode_batch(TEXTS)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        loss = model.ctc_loss(audio, lens, targets, target_lens)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
    with torch.no_grad():  # train mode (batch statistics), deterministic here: no dropout, no SpecAugment
        logits, frames = model.ctc_logits(audio, lens)
    assert [vocab.decode(ids) for ids in ctc_greedy_decode(logits, frames)] == TEXTS

    # Eval mode uses BatchNorm running averages, which lag behind after 40 steps; recalibrate them on the
    # batch (cumulative average) so greedy_decode sees the statistics the model was trained with.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        model(audio, lens)
    assert model.greedy_decode(audio, lens) == TEXTS
    assert model.training, "greedy_decode restores the previous mode"


def test_ctc_loss_warns_when_transcript_cannot_fit(model: ConformerEncoder, vocab: CharVocab) -> None:
    audio, lens = padded_batch([3000])  # 3 output frames for 5 characters
    targets, target_lens = vocab.encode_batch(["అఆఇఅఆ"])
    with pytest.warns(UserWarning, match="longer than their"):
        loss = model.ctc_loss(audio, lens, targets, target_lens)
    assert torch.isfinite(loss)


def test_greedy_decode_collapses_repeats_and_drops_blanks() -> None:
    a, b, c, blank = 2, 3, 4, BLANK_ID
    paths = [[a, a, blank, a, b, b, blank, blank, c], [blank, c, c, blank, b, a, a, a, a]]
    logits = torch.nn.functional.one_hot(torch.tensor(paths), num_classes=5).float()  # (2, 9, 5)
    lengths = torch.tensor([9, 5])  # item 2 stops before its trailing a's
    assert ctc_greedy_decode(logits, lengths) == [[a, a, b, c], [c, b]]


def test_save_load_round_trip(tmp_path, model: ConformerEncoder, vocab: CharVocab) -> None:
    with torch.no_grad():  # move BatchNorm running statistics off their defaults
        model.train()
        model(*padded_batch([16000, 9000]))
    model.eval()
    target = tmp_path / "encoder"
    model.save_pretrained(target)
    model.save_pretrained(target)  # overwriting an existing checkpoint works too
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors", "vocab.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["encoder"], "no temporary folders left behind"
    config = json.loads((target / "config.json").read_text())
    assert config["vocab_size"] == len(vocab) and config["num_layers"] == 2

    loaded = ConformerEncoder.from_pretrained(target)
    assert not loaded.training and loaded.vocab == vocab and loaded.config == model.config
    audio, lens = padded_batch([16000, 7000])
    with torch.no_grad():
        before, after = model(audio, lens), loaded(audio, lens)
    for h0, h1 in zip(before.hidden_states, after.hidden_states):
        assert torch.equal(h0, h1)
    assert torch.equal(model.ctc_logits(audio, lens)[0], loaded.ctc_logits(audio, lens)[0])


def test_from_pretrained_rejects_incomplete_checkpoint(tmp_path, model: ConformerEncoder) -> None:
    model.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        ConformerEncoder.from_pretrained(tmp_path / "ckpt")


@pytest.mark.parametrize(
    "audio, lens, message",
    [
        (torch.zeros(16000), None, "batch"),  # 1-D audio
        (torch.zeros(1, 1, 16000), None, "batch"),  # 3-D audio
        (torch.zeros(2, 16000, dtype=torch.int16), None, "float"),
        (torch.zeros(2, 16000), torch.tensor([16000, 16001]), r"exceed.*item\(s\) \[1\]"),
        (torch.zeros(2, 16000), torch.tensor([16000]), "shape"),
        (torch.zeros(2, 16000), torch.tensor([16000.0, 100.0]), "integer"),
        (torch.zeros(2, 16000), torch.tensor([16000, 1000]), r"item\(s\) \[1\] are shorter"),
        (torch.tensor([[0.0] * 8000, [float("nan")] * 8000]), None, r"item\(s\) \[1\].*NaN"),
    ],
)
def test_bad_input_gives_clear_error(model: ConformerEncoder, audio, lens, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model(audio, lens)


def test_config_validation_and_round_trip(vocab: CharVocab) -> None:
    config = ConformerConfig()
    assert ConformerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="did you mean 'num_layers'"):
        ConformerConfig.from_dict({"num_layer": 4})
    with pytest.raises(ValueError, match="subsampling"):
        ConformerConfig(subsampling=5)
    with pytest.raises(ValueError, match="divisible"):
        ConformerConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="vocab_size"):
        ConformerEncoder(tiny_config(vocab_size=len(vocab) + 1), vocab)
    assert ConformerEncoder(tiny_config(), vocab).config.vocab_size == len(vocab)
