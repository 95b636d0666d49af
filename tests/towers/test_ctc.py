"""CTC compression: runs of one greedy CTC label become one averaged position; padding changes nothing."""

from __future__ import annotations

import torch

from speech_calm.core.tower import TowerOutput
from speech_calm.towers.ctc import CTCCompressedTower, compress_runs
from tests import tiny


def test_runs_are_averaged_and_cut_at_the_real_length() -> None:
    states = torch.arange(12, dtype=torch.float32).view(2, 6, 1)  # two items of 6 frames, one channel
    labels = torch.tensor([[0, 0, 5, 5, 5, 0], [3, 3, 0, 7, 7, 7]])
    mask = torch.tensor([[True] * 6, [True, True, True, True, False, False]])  # item 1: 4 real frames
    out = compress_runs(TowerOutput((states,), mask), labels)
    assert out.mask.tolist() == [[True, True, True], [True, True, True]]
    assert out.hidden_states[0][0, :, 0].tolist() == [0.5, 3.0, 5.0]  # (0+1)/2, (2+3+4)/3, 5
    assert out.hidden_states[0][1, :, 0].tolist() == [6.5, 8.0, 9.0]  # padded frames 10, 11 left out
    # character i at 2i, a pause (blank run) before it at 2i-1; padded frames do not relabel item 1's last run
    assert out.positions.tolist() == [[-1, 0, 1], [0, 1, 2]]


def test_compressed_tower_padding_invariance_and_length() -> None:
    tower = CTCCompressedTower(tiny.speech_tower("conformer"))
    audio, lens = tiny.audio_batch([16000, 7000])
    with torch.no_grad():
        batch = tower(audio, lens)
        alone = tower(audio[1:, :7000], lens[1:])
        frames = tower.tower(audio, lens).mask.sum(-1)
    n = int(alone.mask.sum())
    assert int(batch.mask[1].sum()) == n and n <= int(frames[1])
    for a, b in zip(batch.hidden_states, alone.hidden_states):
        torch.testing.assert_close(a[1, :n], b[0, :n], rtol=1e-5, atol=1e-5)
