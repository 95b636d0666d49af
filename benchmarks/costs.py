"""What composition costs: training against a projector, LoRA and full fine-tuning; decoding against the anchor.

    python -m benchmarks.costs                      # CPU, Gemma 3 270M's architecture (random weights), ~6 min
    python -m benchmarks.costs --device cuda        # the same on a GPU (frozen weights bf16, autocast)
    python -m benchmarks.costs --quick              # tiny models: a smoke run in seconds

One anchor (Gemma 3 270M's architecture: 18 layers, width 640, vocabulary 262144) and one speech tower (our
Conformer, 12 layers, width 256, 25 frames/s), built once with random weights; every number is measured in
the same run, side by side:

- **Training**, at the same batch (audio + prompt + target): CALM bridges every 4th and every 2nd m_A layer;
  the prefix projector (as many parameters as the every-4th bridges); that projector with LoRA r=16 on the
  anchor's attention; that projector with the whole anchor fine-tuned. The anchor cannot hear audio on its
  own, so LoRA and full fine-tuning read the speech the way speech LLMs usually do, through the projector.
  Trainable parameters, step time (m_A's frozen forward included, and shown), peak memory.
- **Decoding**: ms per generated token (greedy, `decoding.generate`, memory cached) for the anchor alone and
  the composition, prompts of 16 and 256 tokens, audio of 5 s and 30 s; the memory m_A adds.
- **Targets**: the ratios the issue asks for, met or not.
- **Scaling**: step time against audio length (CALM and the projector) and against the number of bridges.

Each training configuration runs in a child process forked from the parent that built the models
(`measure.in_child`), so peak memory starts from the same resident set for all. Times are the best of the
timed steps after one warm-up (these machines are shared and noisy); ratios within one run are what to
compare across machines. On CUDA, frozen weights are stored in bf16 and the trainable ones in fp32 under bf16
autocast; the fine-tuned anchor keeps fp32 master weights (AdamW needs them). Decoding on CUDA runs the whole
composition in bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.measure import Clock, PeakMemory, in_child
from speech_calm.core.baselines import AnchorModel
from speech_calm.core.bridge import BridgeConfig, bridge_parameter_count
from speech_calm.core.composition import Composition, Memory
from speech_calm.core.decoding import DecodingOptions, generate
from speech_calm.core.prefix import PrefixComposition, Projector
from speech_calm.towers.conformer import ConformerConfig, ConformerEncoder
from speech_calm.towers.vocab import CharVocab

TOWER = "speech"
SAMPLE_RATE = 16000
MiB = 2**20

# Gemma 3 270M (google/gemma-3-270m's config.json), as Gemma3TextConfig arguments
GEMMA3_270M = dict(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                   num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
                   query_pre_attn_scalar=256, max_position_embeddings=32768)
# the speech tower of issue 2's closing note: 12 layers, width 256
CONFORMER_12x256 = ConformerConfig(d_model=256, num_heads=4, ffn_dim=1024, num_layers=12, subsampling_channels=64)


@dataclass(frozen=True)
class Setup:
    """Sizes of one benchmark run (`full` or `quick`)."""

    anchor: dict[str, Any] = field(default_factory=lambda: dict(GEMMA3_270M))
    tower: ConformerConfig = field(default_factory=lambda: dataclasses.replace(CONFORMER_12x256))
    frame_stack: int = 2  # m_A frames per bridge (and projector) position, as in recipes/telugu.yaml
    lora_rank: int = 16
    batch: int = 4  # training batch
    prompt_tokens: int = 16
    target_tokens: int = 32
    audio_s: float = 5.0  # training audio per item
    steps: int = 2  # timed training steps, after one warm-up
    scale_batch: int = 1
    scale_audio_s: tuple[float, ...] = (5.0, 15.0, 30.0, 60.0)
    scale_bridges: tuple[int, ...] = (1, 2, 3, 6, 12)
    decode_prompts: tuple[int, ...] = (16, 256)
    decode_audio_s: tuple[float, ...] = (5.0, 30.0)
    decode_tokens: int = 16  # generated per call; the first comes from the prompt's forward, not timed
    decode_rounds: int = 3  # anchor and composition take turns, so that noise hits all alike

    @staticmethod
    def full(device: torch.device) -> Setup:
        if device.type == "cuda":  # a GPU idles at batch 4: give it enough work to measure compute, not launches
            return Setup(batch=32, steps=5, scale_batch=8, decode_tokens=48, decode_rounds=2)
        return Setup()

    @staticmethod
    def quick() -> Setup:
        return Setup(
            anchor=dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=8,
                        query_pre_attn_scalar=16, max_position_embeddings=512),
            tower=ConformerConfig(d_model=32, num_heads=4, ffn_dim=64, num_layers=4, subsampling_channels=8,
                                  depthwise_kernel_size=3),
            lora_rank=4, batch=2, prompt_tokens=4, target_tokens=4, audio_s=1.0, steps=1,
            scale_audio_s=(1.0, 2.0), scale_bridges=(1, 2), decode_prompts=(4, 16), decode_audio_s=(1.0, 2.0),
            decode_tokens=4, decode_rounds=1,
        )


# --------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------


def build_anchor(setup: Setup) -> nn.Module:
    """Gemma 3 with random weights (the costs do not depend on the values)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    return Gemma3ForCausalLM(Gemma3TextConfig(**setup.anchor)).eval()


def build_tower(setup: Setup) -> ConformerEncoder:
    torch.manual_seed(1)
    return ConformerEncoder(setup.tower, CharVocab.build(["నమస్కారం"])).eval()


def bridge_config(setup: Setup, every: int = 4, num: int | None = None) -> BridgeConfig:
    """Every `every`-th m_A layer, or `num` connections spread evenly over both towers (the scaling table)."""
    if num is None:
        return BridgeConfig(every=every, frame_stack=setup.frame_stack)
    layers_a, layers_b = setup.tower.num_layers, setup.anchor["num_hidden_layers"]
    pairs = [(round((m + 1) * layers_a / num) - 1, round((m + 1) * layers_b / num) - 1) for m in range(num)]
    return BridgeConfig(every=None, pairs=pairs, frame_stack=setup.frame_stack)


VARIANTS: dict[str, str] = {
    "calm4": "CALM, bridges every 4th layer",
    "calm2": "CALM, bridges every 2nd layer",
    "prefix": "prefix projector",
    "lora": "projector + LoRA (attention)",
    "full": "projector + full fine-tuning",
}


def build_variant(variant: str, setup: Setup, anchor: nn.Module, tower: ConformerEncoder,
                  device: torch.device, num_bridges: int | None = None) -> nn.Module:
    """One training configuration on `device`, with `requires_grad` set on exactly what trains.

    Called in a child process: it may change `anchor` (LoRA layers, dtype) without affecting the parent.
    """
    tower.to(device, frozen_dtype(device))
    anchor.to(device, torch.float32 if variant == "full" else frozen_dtype(device))  # fine-tuning keeps fp32 masters
    if variant in ("calm4", "calm2"):
        cfg = bridge_config(setup, every=4 if variant == "calm4" else 2, num=num_bridges)
        return Composition(anchor, {TOWER: tower}, cfg).to(device)
    # the projector gets as many parameters as the every-4th bridges, as in speech.model.build_composition
    hidden = Projector.matched_hidden(bridge_parameter_count(tower, anchor, bridge_config(setup), TOWER),
                                      tower.hidden_size, anchor.config.hidden_size, setup.frame_stack)
    if variant == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
        inject_adapter_in_model(LoraConfig(r=setup.lora_rank, lora_alpha=2 * setup.lora_rank,
                                           target_modules=targets), anchor)
    model = PrefixComposition(anchor, {TOWER: tower}, hidden, setup.frame_stack).to(device)  # freezes the anchor
    if variant == "lora":
        for name, p in anchor.named_parameters():
            if "lora_" in name:  # trainable weights stay fp32 under autocast
                p.data = p.data.float()
                p.requires_grad_(True)
    elif variant == "full":
        anchor.requires_grad_(True)
    elif variant != "prefix":
        raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    return model


def count(params: Any) -> int:
    return sum(p.numel() for p in params)


# --------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Random audio (B, samples) and token rows [prompt | target] (B, P + N), all real (no padding)."""

    audio: torch.Tensor
    audio_lens: torch.Tensor
    input_ids: torch.Tensor
    targets: torch.Tensor  # (B, N), the last N tokens of input_ids

    @staticmethod
    def random(setup: Setup, batch: int, audio_s: float, device: torch.device) -> Batch:
        g = torch.Generator().manual_seed(0)
        samples = int(audio_s * SAMPLE_RATE)
        audio = 0.1 * torch.randn(batch, samples, generator=g)
        ids = torch.randint(3, setup.anchor["vocab_size"], (batch, setup.prompt_tokens + setup.target_tokens),
                            generator=g)
        return Batch(audio.to(device), torch.full((batch,), samples, device=device), ids.to(device),
                     ids[:, setup.prompt_tokens :].to(device))


def frozen_dtype(device: torch.device) -> torch.dtype:
    """Weights that never change: bf16 on CUDA (half the memory, no master copy needed); fp32 on the CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (as the training loop does); plain fp32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, clock: Clock
               ) -> tuple[float, float]:
    """One optimiser step on the cross-entropy of the target tokens; returns (step seconds, m_A seconds)."""
    device = clock.device
    t0 = clock()
    with torch.no_grad(), autocast(device):  # the frozen speech tower, as the training loop runs it
        outputs = model.run_towers({TOWER: {"audio": batch.audio, "audio_lens": batch.audio_lens}}, None)
    t1 = clock()
    n = batch.targets.shape[1]
    with autocast(device):  # logits only where there are targets (the position before each one)
        logits = model(batch.input_ids, torch.ones_like(batch.input_ids), tower_outputs=outputs,
                       logits_to_keep=n + 1).logits[:, :-1]
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch.targets.reshape(-1))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return clock() - t0, t1 - t0


def measure_training(setup: Setup, anchor: nn.Module, tower: ConformerEncoder, device: torch.device,
                     threads: int, variant: str, batch: int, audio_s: float, num_bridges: int | None = None
                     ) -> dict[str, Any]:
    """Build `variant`, run one warm-up and `setup.steps` timed steps; runs in a child process."""
    torch.set_num_threads(threads)
    anchor_params = count(anchor.parameters())
    model = build_variant(variant, setup, anchor, tower, device, num_bridges)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    data = Batch.random(setup, batch, audio_s, device)
    clock, memory = Clock(device, threads), PeakMemory(device)
    memory.reset()
    train_step(model, optimizer, data, clock)  # warm-up: allocates AdamW's state, picks kernels
    times = [train_step(model, optimizer, data, clock) for _ in range(setup.steps)]
    step_s, tower_s = min(times)
    return dict(variant=variant, params=count(params), anchor_params=anchor_params, step_s=step_s,
                tower_s=tower_s, peak_mib=memory.peak_mib(),
                bridges=sum(len(b) for b in model.bridges.values()) if isinstance(model, Composition) else 0,
                device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU")


# --------------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------------


def memory_bytes(memory: Memory) -> int:
    """Bytes of the bridges' cached keys and values (what the composition keeps per input while decoding)."""
    return sum(t.numel() * t.element_size() for tm in memory.towers.values() for bm in tm.bridges
               for t in (bm.key, bm.value))


def timed_generate(model: nn.Module, prompt: torch.Tensor, tower_inputs: dict | None, tokens: int,
                   clock: Clock, memory: PeakMemory) -> tuple[list[float], float]:
    """Greedy decoding of `tokens` tokens; returns (seconds of each generated token, peak MiB).

    A forward hook stamps the end of every forward: the first is the prompt's (with m_A's encoding before it),
    each later interval is one generated token (scores, argmax and the one-token forward with cached memory).
    """
    stamps: list[float] = []
    handle = model.register_forward_hook(lambda *_: stamps.append(clock()))
    options = DecodingOptions(max_new_tokens=tokens, eos_token_ids=(), pad_token_id=0)
    memory.reset()
    try:
        generate(model, prompt, None, tower_inputs, options)
    finally:
        handle.remove()
    return [b - a for a, b in zip(stamps, stamps[1:])], memory.peak_mib()


def measure_decoding(setup: Setup, anchor: nn.Module, tower: ConformerEncoder, device: torch.device,
                     threads: int, profile: bool = False) -> dict[str, Any]:
    """Per-token decoding time of the anchor alone and of the composition (bridges every 4th layer); with
    `profile`, also torch.profiler's op tables for one generate call of each (shortest prompt, longest audio)."""
    torch.set_num_threads(threads)
    composition = Composition(anchor, {TOWER: tower}, bridge_config(setup)).to(device, frozen_dtype(device)).eval()
    alone = AnchorModel(composition.anchor).eval()  # the same module: bridge hooks return at once without memory
    clock, peak = Clock(device, threads), PeakMemory(device)
    g = torch.Generator().manual_seed(0)
    audio = {s: {TOWER: {"audio": 0.1 * torch.randn(1, int(s * SAMPLE_RATE), generator=g).to(device),
                         "audio_lens": torch.tensor([int(s * SAMPLE_RATE)], device=device)}}
             for s in setup.decode_audio_s}
    samples: dict[tuple[int, float | None], list[float]] = {}
    peaks: dict[tuple[int, float | None], float] = {}
    for _ in range(setup.decode_rounds):
        for p in setup.decode_prompts:
            prompt = torch.randint(3, setup.anchor["vocab_size"], (1, p), generator=g).to(device)
            for s in (None, *setup.decode_audio_s):  # take turns, so that noise hits all alike
                model = alone if s is None else composition
                times, peak_mib = timed_generate(model, prompt, None if s is None else audio[s],
                                                 setup.decode_tokens, clock, peak)
                samples.setdefault((p, s), []).extend(times)
                peaks[p, s] = max(peaks.get((p, s), 0.0), peak_mib)
    with torch.no_grad():
        cached = {s: memory_bytes(composition.encode(audio[s])) / MiB for s in setup.decode_audio_s}
    tower_mib = sum(t.numel() * t.element_size() for t in tower.parameters()) / MiB
    bridge_mib = sum(t.numel() * t.element_size() for t in composition.bridges.parameters()) / MiB
    anchor_mib = sum(t.numel() * t.element_size() for t in composition.anchor.parameters()) / MiB
    profiles = {}
    if profile:
        p, s = setup.decode_prompts[0], setup.decode_audio_s[-1]
        prompt = torch.randint(3, setup.anchor["vocab_size"], (1, p), generator=g).to(device)
        for name, model, inputs in (("anchor alone", alone, None), (f"composition, {s:g} s", composition, audio[s])):
            profiles[name] = profile_generate(model, prompt, inputs, setup.decode_tokens, device)
    # the fastest token estimates the cost itself; slower ones waited for memory bandwidth or a core that
    # other jobs held (per-token cost is otherwise the same at every step: the caches grow by one position)
    best = {cell: min(t) for cell, t in samples.items()}
    median = {cell: statistics.median(t) for cell, t in samples.items()}
    return dict(per_token=best, median=median, peaks=peaks, cached_mib=cached, tower_mib=tower_mib, bridge_mib=bridge_mib,
                anchor_mib=anchor_mib, bridges=len(composition.bridges[TOWER]), profiles=profiles)


def profile_generate(model: nn.Module, prompt: torch.Tensor, tower_inputs: dict | None, tokens: int,
                     device: torch.device) -> str:
    """torch.profiler's table of the ops of one greedy `generate` call, the most expensive first."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    options = DecodingOptions(max_new_tokens=tokens, eos_token_ids=(), pad_token_id=0)
    with profile(activities=activities) as prof:
        generate(model, prompt, None, tower_inputs, options)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=15)


# --------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (it prints readably and pastes into the README as is)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def training_table(results: dict[str, dict[str, Any]]) -> str:
    full = results["full"]
    rows = []
    for key, r in results.items():
        name = VARIANTS[key] + (f" ({r['bridges']})" if r["bridges"] else "")
        rows.append([name, fmt_params(r["params"]), f"{100 * r['params'] / r['anchor_params']:.2f}%",
                     f"{r['step_s']:.3f}", f"{r['tower_s']:.3f}", f"{r['peak_mib']:.0f}",
                     f"{r['step_s'] / full['step_s']:.2f}", f"{r['peak_mib'] / full['peak_mib']:.2f}"])
    return table(["configuration", "trainable", "% of anchor", "step s", "of which m_A s", "peak MiB",
                  "time × full FT", "memory × full FT"], rows)


def decoding_table(setup: Setup, d: dict[str, Any]) -> str:
    rows = []
    for p in setup.decode_prompts:
        base = d["per_token"][p, None]
        med = d["median"][p, None]
        rows.append([p, "— (anchor alone)", f"{1000 * base:.2f}", "1.00", f"{1000 * med:.2f}", "1.00",
                     f"{d['peaks'][p, None]:.0f}"])
        for s in setup.decode_audio_s:
            t, m = d["per_token"][p, s], d["median"][p, s]
            rows.append([p, f"{s:g} s", f"{1000 * t:.2f}", f"{t / base:.3f}", f"{1000 * m:.2f}", f"{m / med:.3f}",
                         f"{d['peaks'][p, s]:.0f}"])
    return table(["prompt tokens", "audio", "ms / token (best)", "× anchor", "ms / token (median)", "× anchor",
                  "peak MiB"], rows)


def m_a_table(setup: Setup, d: dict[str, Any]) -> str:
    rows = [["anchor weights (for scale)", f"{d['anchor_mib']:.1f}"],
            ["m_A weights (speech tower)", f"{d['tower_mib']:.1f}"],
            [f"bridge weights ({d['bridges']} bridges)", f"{d['bridge_mib']:.1f}"]]
    rows += [[f"cached bridge keys/values, {s:g} s of audio", f"{d['cached_mib'][s]:.2f}"]
             for s in setup.decode_audio_s]
    return table(["what the composition adds at decoding", "MiB"], rows)


def scaling_tables(audio: dict[float, dict[str, dict]], bridges: list[dict[str, Any]], setup: Setup) -> str:
    rows = []
    for s, r in audio.items():
        c, p = r["calm4"], r["prefix"]
        positions = setup.prompt_tokens + setup.target_tokens + -(-round(s * setup.tower.frame_rate_hz)
                                                                   // setup.frame_stack)
        rows.append([f"{s:g}", f"{c['step_s']:.3f}", f"{c['tower_s']:.3f}", f"{c['peak_mib']:.0f}",
                     f"{p['step_s']:.3f}", f"{p['peak_mib']:.0f}", positions])
    by_audio = table(["audio s", "CALM step s", "of which m_A s", "CALM peak MiB", "projector step s",
                      "projector peak MiB", "projector: anchor positions"], rows)
    rows = [[r["bridges"], fmt_params(r["params"]), f"{100 * r['params'] / r['anchor_params']:.2f}%",
             f"{r['step_s']:.3f}", f"{r['peak_mib']:.0f}"] for r in bridges]
    by_bridges = table(["bridges", "trainable", "% of anchor", "step s", "peak MiB"], rows)
    return by_audio + "\n\n" + by_bridges


def targets_table(train: dict[str, dict[str, Any]], d: dict[str, Any], setup: Setup) -> tuple[str, bool]:
    calm, full = train["calm4"], train["full"]
    decode = max(d["per_token"][p, s] / d["per_token"][p, None]
                 for p in setup.decode_prompts for s in setup.decode_audio_s)
    checks = [("composed decoding per token (best), × anchor (worst cell)", decode, 1.10),
              ("CALM (every 4th) step time, × full FT", calm["step_s"] / full["step_s"], 0.6),
              ("CALM (every 4th) peak memory, × full FT", calm["peak_mib"] / full["peak_mib"], 0.5),
              ("CALM (every 4th) trainable parameters, % of anchor", 100 * calm["params"] / calm["anchor_params"], 3.0)]
    rows = [[name, f"≤ {target:g}", f"{value:.3f}", "yes" if value <= target else "**no**"]
            for name, value, target in checks]
    return table(["target", "goal", "measured", "met"], rows), all(v <= t for _, v, t in checks)


# --------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------


def run(setup: Setup, device: torch.device, threads: int, log: Callable[[str], None] = print,
        profile: bool = False) -> bool:
    """Measure everything and `log` the tables; returns whether every target was met. `profile` adds op
    tables of one decoding call (anchor alone and composed), to see where per-token time goes."""
    torch.set_num_threads(1)  # the parent stays single-threaded, or children using OpenMP would hang (measure.py)
    anchor, tower = build_anchor(setup), build_tower(setup)  # once, in the parent: the children share them

    def child(*args: Any) -> dict[str, Any]:
        print(f"measuring {args} ...", file=sys.stderr, flush=True)
        return in_child(measure_training, setup, anchor, tower, device, threads, *args)

    # each table is printed as soon as it is measured: a run cut short still reports what it has
    train = {v: child(v, setup.batch, setup.audio_s) for v in VARIANTS}
    where = train["full"]["device_name"] + ("" if device.type == "cuda" else f", {threads} thread(s)")
    a = setup.anchor
    log(f"# Costs on {where}, torch {torch.__version__}; times are {Clock(device, threads).kind}\n")
    log(f"anchor: Gemma 3 architecture, {a['num_hidden_layers']} layers, width {a['hidden_size']}, vocabulary "
        f"{a['vocab_size']} ({fmt_params(train['full']['anchor_params'])} parameters, random weights); m_A: "
        f"Conformer, {setup.tower.num_layers} layers, width {setup.tower.d_model}, "
        f"{setup.tower.frame_rate_hz:g} frames/s, {setup.frame_stack} frames per bridge position; "
        + ("frozen weights bf16, trainable fp32, bf16 autocast" if device.type == "cuda" else "fp32") + "\n")
    log(f"## Training: batch {setup.batch} × ({setup.audio_s:g} s audio, {setup.prompt_tokens} prompt + "
        f"{setup.target_tokens} target tokens), AdamW, best of {setup.steps} steps\n")
    log(training_table(train) + "\n")

    print("measuring decoding ...", file=sys.stderr, flush=True)
    d = in_child(measure_decoding, setup, anchor, tower, device, threads, profile)
    log(f"## Decoding: greedy, batch 1, memory cached; ms per generated token over {setup.decode_rounds} rounds "
        f"× {setup.decode_tokens - 1} tokens (best and median), anchor and composition taking turns\n")
    log(decoding_table(setup, d) + "\n")
    log(m_a_table(setup, d) + "\n")
    for name, text in d["profiles"].items():
        log(f"### Profile of one generate call ({setup.decode_tokens} tokens), {name}\n\n```\n{text}\n```\n")
    targets, met = targets_table(train, d, setup)
    log("## Targets\n")
    log(targets + "\n")

    audio = {s: {v: child(v, setup.scale_batch, s) for v in ("calm4", "prefix")} for s in setup.scale_audio_s}
    bridges = [child("calm4", setup.scale_batch, setup.audio_s, n) for n in setup.scale_bridges]
    log(f"## Scaling: training step at batch {setup.scale_batch}; against audio length, and against the number "
        f"of bridges ({setup.audio_s:g} s audio)\n")
    log(scaling_tables(audio, bridges, setup) + "\n")
    return met


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Training and decoding costs of CALM against its alternatives.")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny models and few steps: a smoke run")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: 1 on CPU, for steady numbers on shared machines)")
    p.add_argument("--out", default=None, help="also write the tables (Markdown) to this file")
    p.add_argument("--profile", action="store_true", help="add op tables of one decoding call (torch.profiler)")
    args = p.parse_args(argv)
    device = torch.device(args.device)  # no CUDA call in this process: the forked children use the GPU
    threads = args.threads or (1 if device.type == "cpu" else 8)
    setup = Setup.quick() if args.quick else Setup.full(device)
    lines: list[str] = []

    def log(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    met = run(setup, device, threads, log, args.profile)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0 if met or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
