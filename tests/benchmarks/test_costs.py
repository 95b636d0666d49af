"""The cost benchmark's quick path (tiny models): every table is produced and every configuration trains."""

from __future__ import annotations

import dataclasses

import torch

from benchmarks import costs
from benchmarks.measure import PeakMemory, in_child


def test_quick_run_prints_every_table() -> None:
    setup = dataclasses.replace(costs.Setup.quick(), scale_audio_s=(1.0,), scale_bridges=(2,), decode_prompts=(4,))
    lines: list[str] = []
    threads = torch.get_num_threads()
    try:
        costs.run(setup, torch.device("cpu"), threads=1, log=lines.append)
    finally:
        torch.set_num_threads(threads)  # run() makes this process single-threaded (see benchmarks/measure.py)
    text = "\n".join(lines)
    for heading in ("## Training", "## Decoding", "## Scaling", "## Targets"):
        assert heading in text
    for name in costs.VARIANTS.values():
        assert name in text
    assert "(anchor alone)" in text and "cached bridge keys/values" in text


def test_variants_train_exactly_what_they_say() -> None:
    setup = costs.Setup.quick()
    anchor, tower = costs.build_anchor(setup), costs.build_tower(setup)
    n_anchor = sum(p.numel() for p in anchor.parameters())

    def trainable(variant: str) -> tuple[int, int, int]:
        model = costs.build_variant(variant, setup, anchor, tower, torch.device("cpu"))
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        assert not any(n.startswith("towers.") for n in names)  # the speech tower is frozen in every variant
        return (len(names), sum(n.startswith("bridges.") for n in names),
                sum(p.numel() for p in model.parameters() if p.requires_grad))

    # in children: LoRA and fine-tuning change the anchor, which must stay as built for the next variant
    n, bridges, _ = in_child(trainable, "calm4")
    assert n == bridges > 0
    n, bridges, _ = in_child(trainable, "lora")
    assert n > bridges > 0  # the projector and the adapters
    _, _, params = in_child(trainable, "full")
    assert params > n_anchor  # the whole anchor and the projector


def test_in_child_reports_errors_and_peak_memory_resets() -> None:
    def fail() -> None:
        raise ValueError("boom")

    try:
        in_child(fail)
    except RuntimeError as e:
        assert "boom" in str(e)
    else:
        raise AssertionError("the child's error was not raised")

    def grow() -> tuple[float, float]:
        memory = PeakMemory(torch.device("cpu"))
        memory.reset()
        before = memory.peak_mib()
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del block
        return before, memory.peak_mib()

    before, after = in_child(grow)
    assert after - before > 48
