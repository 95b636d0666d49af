"""data_prep/vaani.py on a tiny Vaani-format fixture with every kind of bad row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from data_prep import vaani
from data_prep.vaani import (
    MANIFEST_KEYS,
    SourceUnavailable,
    assign_splits,
    main,
    prepare,
)
from speech_calm.speech.audio import encode_audio
from speech_calm.speech.indic import normalize

REPO = Path(__file__).resolve().parents[2]
TELUGU = ["నా పేరు రాము", "రవి హైదరాబాద్‌లో ఉంటాడు.", "ఈ రోజు సోమవారం", "నాకు దోశ అంటే ఇష్టం"]
# Real Vaani columns, including the private ones that must never reach the outputs.
SCHEMA = pa.schema([
    ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ("language", pa.string()), ("gender", pa.string()), ("state", pa.string()), ("district", pa.string()),
    ("transcript", pa.string()), ("referenceImage", pa.string()), ("pincode", pa.int64()),
    ("speakerImageHash", pa.string()),
])


def _clip(i: int, seconds: float = 1.0, sr: int = 16000, channels: int = 1) -> bytes:
    """A distinct tone-plus-noise clip (distinct bytes, so no accidental duplicates)."""
    rng = np.random.default_rng(i)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 10 * i) * t) + 0.01 * rng.standard_normal(t.shape[0])
    x = np.stack([x] * channels, axis=1) if channels > 1 else x
    return encode_audio(x.astype(np.float32), sr)


def _row(name: str, audio: bytes, transcript: str | None, language: str = "Telugu", gender: str = "Male") -> dict:
    return {
        "audio": {"bytes": audio, "path": name}, "language": language, "gender": gender,
        "state": "AndhraPradesh", "district": "Guntur", "transcript": transcript,
        "referenceImage": "Images/x.jpg", "pincode": 522001, "speakerImageHash": "deadbeefcafe",
    }


def _write(path: Path, rows: list[dict], schema: pa.Schema = SCHEMA) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


GOOD = 12  # 6 speakers x 2 clips; plus the stereo clip and the "../" clip below


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A Vaani parquet mirror (no official splits) with a speaker table, like the main dataset's."""
    root = tmp_path_factory.mktemp("mirror")
    rows, speakers = [], []
    for i in range(GOOD):
        name = f"IISc_Vaani_Guntur_{i:03d}.wav"
        rows.append(_row(name, _clip(i), TELUGU[i % len(TELUGU)], gender="Male" if i % 2 else "Female"))
        speakers.append({"file_name": name, "speakerID": f"spk{i // 2}", "pincode": 1, "speakerImageHash": "h"})
    rows += [
        _row("corrupt.wav", b"RIFF not really audio" * 20, TELUGU[0]),
        _row("empty_text.wav", _clip(100), "  <noise> --  "),
        _row("hindi.wav", _clip(101), "मेरा नाम राम है", language="Hindi"),
        _row("latin.wav", _clip(102), "naa peru ramu", language="Telugu"),
        _row("stereo44k.wav", _clip(103, 1.5, 44100, 2), "వాచ్‌మన్ {watchman} <noise> వచ్చాడు --"),
        _row("long45s.wav", _clip(104, 45.0, 8000), TELUGU[1]),
        _row("../../../escape/evil.wav", _clip(105), TELUGU[2]),
        _row("IISc_Vaani_Guntur_000.wav", _clip(0), TELUGU[0]),  # the first row again: a duplicate
    ]
    speakers += [{"file_name": "stereo44k.wav", "speakerID": "spk6", "pincode": 1, "speakerImageHash": "h"},
                 {"file_name": "evil.wav", "speakerID": "spk6", "pincode": 1, "speakerImageHash": "h"}]
    _write(root / "Telugu" / "part-00000.parquet", rows)
    (root / "Telugu" / "part-00001.parquet").write_bytes(b"PAR1 truncated download")  # a broken file
    pq.write_table(pa.Table.from_pylist(speakers), root / "speakers.parquet")
    return root


def _manifests(out: Path) -> dict[str, list[dict]]:
    return {s: [json.loads(line) for line in (out / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()]
            for s in ("train", "dev", "test")}


def _run(mirror: Path, out: Path, **kw) -> dict:
    kw.setdefault("num_workers", 1)
    return prepare("local", out, ["telugu"], mirror, progress=False, **kw)


def test_local_mirror_rules(mirror: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stats = _run(mirror, out)
    man = _manifests(out)
    records = [r for rs in man.values() for r in rs]
    # every bad row dropped, and counted under its reason
    assert stats["dropped"] == {"duplicate": 1, "empty_transcript": 1, "too_long": 1, "unreadable_audio": 1,
                                "unreadable_file": 1, "wrong_language": 1, "wrong_script": 1}
    assert stats["rows_seen"] == GOOD + 9
    assert len(records) == GOOD + 2 == stats["total"]["utterances"]
    # counts per split match the manifests, and every split has data
    for split, recs in man.items():
        assert stats["splits"][split]["utterances"] == len(recs) > 0
        assert stats["splits"][split]["per_language"]["telugu"]["utterances"] == len(recs)
    # speaker-disjoint, joined from the speaker table
    speakers = {s: {r["speaker"] for r in recs} for s, recs in man.items()}
    assert not (speakers["train"] & speakers["dev"]) and not (speakers["train"] & speakers["test"])
    assert not (speakers["dev"] & speakers["test"])
    assert None not in set().union(*speakers.values())
    assert stats["speakers_in_several_splits"] == 0 and stats["split_method"] == {"telugu": "speaker"}
    # manifest lines: exact keys, sorted by id, audio is 16 kHz mono FLAC of the stated length
    for recs in man.values():
        assert [r["id"] for r in recs] == sorted(r["id"] for r in recs)
        for r in recs:
            assert tuple(r) == MANIFEST_KEYS
            info = sf.info(out / r["audio"])
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
            assert info.frames / 16000 == pytest.approx(r["duration"], abs=1e-3)
            assert r["language"] == "telugu" and r["source"] == "vaani" and r["gender"] in ("male", "female")
    by_file = {r["id"]: r for r in records}
    # 44.1 kHz stereo -> 16 kHz mono, same length; transcript forms
    stereo = by_file["te_stereo44k"]
    assert stereo["duration"] == pytest.approx(1.5, abs=1e-3)
    assert stereo["text"] == "వాచ్మన్ వచ్చాడు"
    assert stereo["text_code_switched"] == "watchman వచ్చాడు"
    assert stereo["text_raw"] == "వాచ్‌మన్ {watchman} <noise> వచ్చాడు --"
    assert by_file["te_IISc_Vaani_Guntur_001"]["text"] == "రవి హైదరాబాద్లో ఉంటాడు"  # ZWNJ gone, marks kept
    # the "../" path stays inside OUT/audio
    assert (out / "audio" / "te_evil.flac").is_file()
    assert not (tmp_path / "escape").exists() and not (out.parent.parent / "escape").exists()
    assert sorted(p.name for p in (out / "audio").iterdir()) == sorted(f"{i}.flac" for i in by_file)
    # private columns never written; attribution beside the output
    for f in ("train.jsonl", "dev.jsonl", "test.jsonl", "stats.json"):
        text = (out / f).read_text(encoding="utf-8")
        assert "pincode" not in text and "522001" not in text and "deadbeef" not in text
    assert "CC BY 4.0" in (out / "ATTRIBUTION.md").read_text(encoding="utf-8")


def test_rerun_is_byte_identical_and_reuses_audio(mirror: Path, tmp_path: Path) -> None:
    files = ("train.jsonl", "dev.jsonl", "test.jsonl", "stats.json")
    _run(mirror, tmp_path / "inline")
    first = {f: (tmp_path / "inline" / f).read_bytes() for f in files}
    out = tmp_path / "pool"
    stats = _run(mirror, out, num_workers=2)  # worker processes must give the same result
    assert stats["run"]["decoded"] == GOOD + 2
    assert {f: (out / f).read_bytes() for f in files} == first
    stats = _run(mirror, out)
    assert stats["run"]["decoded"] == 0 and stats["run"]["reused"] == GOOD + 2
    assert {f: (out / f).read_bytes() for f in files} == first


def test_resume_after_crash(mirror: Path, tmp_path: Path, monkeypatch) -> None:
    clean = tmp_path / "clean"
    _run(mirror, clean)
    out = tmp_path / "crashed"
    real = vaani.audio_jobs._decode_job
    calls = {"n": 0}

    def crash_after_five(job):
        if calls["n"] == 5:
            raise KeyboardInterrupt  # the run is killed mid-way
        calls["n"] += 1
        return real(job)

    monkeypatch.setattr(vaani.audio_jobs, "_decode_job", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        _run(mirror, out)
    assert not (out / "train.jsonl").exists()  # no manifest from a half-finished run
    assert not list((out / "audio").glob(".*"))  # no half-written audio

    calls["n"] = 0
    monkeypatch.setattr(vaani.audio_jobs, "_decode_job",
                        lambda job: (calls.__setitem__("n", calls["n"] + 1), real(job))[1])
    stats = _run(mirror, out)
    assert stats["run"]["reused"] == 5 and calls["n"] == stats["run"]["decoded"] == GOOD + 2 - 5
    for f in ("train.jsonl", "dev.jsonl", "test.jsonl", "stats.json"):
        assert (out / f).read_bytes() == (clean / f).read_bytes()


def test_official_splits_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "mirror" / "audio" / "Telugu"
    for split, n in (("train", 4), ("validation", 2), ("test", 2)):
        rows = [_row(f"{split}_{i}.wav", _clip(hash((split, i)) % 10_000), TELUGU[i % 4]) for i in range(n)]
        _write(root / f"{split}-00000-of-00001.parquet", rows)
    out = tmp_path / "out"
    stats = prepare("local", out, ["telugu"], tmp_path / "mirror", num_workers=1, progress=False)
    man = _manifests(out)
    assert {s: len(r) for s, r in man.items()} == {"train": 4, "dev": 2, "test": 2}
    assert all(r["id"].startswith("te_validation_") for r in man["dev"])
    assert stats["split_method"] == {"telugu": "official"}
    # stats.json counts what dev and test share with train: here every sentence (TELUGU[0] and [1])
    assert stats["overlap_with_train"]["dev"] == {"utterances": 2, "utterances_in_train": 2, "sentences": 2,
                                                  "sentences_in_train": 2, "words": len({w for t in TELUGU[:2]
                                                  for w in normalize(t).split()}), "words_not_in_train": 0}
    # --split restricts what is read
    stats = prepare("local", tmp_path / "out2", ["telugu"], tmp_path / "mirror", splits=["test"],
                    num_workers=1, progress=False)
    assert stats["total"]["utterances"] == 2


def test_audio_folder_with_tsv(tmp_path: Path) -> None:
    data = tmp_path / "folder"
    lines = ["path\ttranscript\tgender"]
    for i in range(6):
        spk = f"speaker{i % 3}"
        (data / spk).mkdir(parents=True, exist_ok=True)
        (data / spk / f"u{i}.wav").write_bytes(_clip(200 + i))
        lines.append(f"{spk}/u{i}.wav\t{TELUGU[i % 4]}\tfemale")
    (tmp_path / "outside.wav").write_bytes(_clip(300))
    lines += ["../outside.wav\tనా పేరు రాము\tmale", "speaker0/missing.wav\tనా పేరు రాము\tmale"]
    (data / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    stats = prepare("local", out, ["telugu"], data, num_workers=1, progress=False)
    assert stats["dropped"] == {"unsafe_path": 1, "missing_audio": 1}
    records = [r for rs in _manifests(out).values() for r in rs]
    assert len(records) == 6 and {r["speaker"] for r in records} == {"speaker0", "speaker1", "speaker2"}
    assert stats["source"] == "local" and "local files" in (out / "ATTRIBUTION.md").read_text()


def test_hours_cap_and_duration_options(mirror: Path, tmp_path: Path) -> None:
    stats = _run(mirror, tmp_path / "a", hours=5 / 3600)  # 5 s of audio
    assert stats["total"]["utterances"] == 5 and stats["not_used_over_hours_cap"] == 0  # stops reading
    stats = _run(mirror, tmp_path / "b", min_duration=1.2)
    assert stats["dropped"]["too_short"] == GOOD + 2  # the 1 s clips (and the duplicate); 1.5 s stays
    with pytest.raises(ValueError, match="min-duration"):
        _run(mirror, tmp_path / "c", min_duration=5, max_duration=1)


def test_assign_splits_balances_duration_by_speaker() -> None:
    records = [{"id": f"u{s}_{k}", "language": "telugu", "speaker": f"s{s}", "duration": 3.0, "_split": None}
               for s in range(20) for k in range(5)]
    split = assign_splits(records, seed=0)
    share = {name: sum(r["duration"] for r in records if split[r["id"]] == name) / 300
             for name in ("train", "dev", "test")}
    assert share == {"train": pytest.approx(0.8), "dev": pytest.approx(0.1), "test": pytest.approx(0.1)}
    owners: dict[str, set[str]] = {}
    for r in records:
        owners.setdefault(r["speaker"], set()).add(split[r["id"]])
    assert all(len(v) == 1 for v in owners.values())
    assert assign_splits(records, seed=0) == split and assign_splits(records, seed=1) != split


def test_rows_from_a_datasets_stream(mirror: Path) -> None:
    """The hf path's row conversion, run through the real `datasets` streaming reader on local files."""
    import datasets

    ds = datasets.load_dataset("parquet", data_files={"validation": str(mirror / "Telugu" / "part-00000.parquet")},
                               streaming=True)
    stream = ds["validation"].cast_column("audio", datasets.Audio(decode=False))
    rows = list(vaani.rows_from_dataset(stream, "validation"))
    assert len(rows) == GOOD + 8
    assert rows[0].split == "dev" and rows[0].key == "IISc_Vaani_Guntur_000.wav"
    assert rows[0].audio == _clip(0) and rows[0].fields["transcript"] == TELUGU[0]
    assert "pincode" not in rows[0].fields and "speakerImageHash" not in rows[0].fields


def test_hf_without_access_fails_fast_and_writes_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "out"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["--source", "hf", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "HF_TOKEN" in err and "--source synthetic" in err and "--source local" in err
    assert not out.exists()


def test_hf_cli_on_an_offline_machine(tmp_path: Path) -> None:
    """The real command, with the hub not switched off: it must fail fast, clearly, writing nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env["HF_HOME"] = str(tmp_path / "hf_home")  # no cached token
    out = tmp_path / "out"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "data_prep/vaani.py", "--source", "hf", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "HF_TOKEN" in proc.stderr and "--source synthetic" in proc.stderr
    assert time.monotonic() - started < 60
    assert not out.exists() and not (tmp_path / "hf_home" / "token").exists()


def test_cli_errors(tmp_path: Path, capsys) -> None:
    assert main(["--source", "local", "--out", str(tmp_path / "o")]) == 2
    assert "needs PATH" in capsys.readouterr().err
    assert main(["--source", "local", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--source", "synthetic", "--language", "klingon", "--out", str(tmp_path / "o")]) == 2
    assert "unknown language" in capsys.readouterr().err
    with pytest.raises(SourceUnavailable, match="no Vaani parquet"):
        prepare("local", tmp_path / "o", ["telugu"], tmp_path, progress=False)


class _FakeHubFS:
    """HfFileSystem over a local folder laid out like the Hub: <root>/<owner>/<name>/<path>."""

    root: Path

    def __init__(self, token=None) -> None:
        pass

    def glob(self, pattern: str) -> list[str]:
        prefix = pattern.split("*", 1)[0]  # callers filter what they get, as they do on the Hub
        files = (f"datasets/{p.relative_to(self.root).as_posix()}" for p in self.root.rglob("*.parquet"))
        return sorted(f for f in files if f.startswith(prefix))

    def open(self, path: str, mode: str = "rb"):
        return open(self.root / path.split("/", 1)[1], mode)


def test_hf_path_falls_back_to_listing_parquet_files(mirror: Path, tmp_path: Path, monkeypatch) -> None:
    """`--source hf` end to end, with the Hub replaced by local files and a config that fails to load."""
    import shutil

    import datasets
    import huggingface_hub

    hub = tmp_path / "hub"
    data = hub / vaani.HF_REPO / "audio" / "Telugu"
    data.mkdir(parents=True)
    shutil.copy(mirror / "Telugu" / "part-00000.parquet", data / "test-00000-of-00001.parquet")
    other = hub / vaani.HF_REPO / "audio" / "Hindi"
    other.mkdir(parents=True)
    shutil.copy(mirror / "Telugu" / "part-00000.parquet", other / "train-00000-of-00001.parquet")
    # the main dataset's rows carry the speaker IDs (and private columns, which must stay unread)
    main_dir = hub / vaani.HF_MAIN_REPO / "audio" / "AndhraPradesh" / "Guntur"
    main_dir.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(
        [{"audio": {"bytes": None, "path": f"IISc_Vaani_Guntur_{i:03d}.wav"}, "speakerID": f"S{i // 3}",
          "pincode": 522001} for i in range(GOOD)]), main_dir / "train-00000-of-00001.parquet")
    _FakeHubFS.root = hub
    monkeypatch.setattr(huggingface_hub, "HfFileSystem", _FakeHubFS)
    monkeypatch.setattr(vaani.hub, "check_hf_access", lambda *a, **k: None)
    monkeypatch.setattr(vaani.hub, "_hf_token", lambda: None)

    def broken_config(*args, **kwargs):
        raise ValueError("BuilderConfig 'Telugu' not found")

    monkeypatch.setattr(datasets, "load_dataset", broken_config)
    out = tmp_path / "out"
    stats = prepare("hf", out, ["telugu"], speakers="hub", num_workers=1, progress=False)
    man = _manifests(out)
    assert len(man["test"]) == GOOD + 2 and not man["train"] and not man["dev"]  # official split kept
    assert stats["rows_seen"] == GOOD + 8  # only the Telugu config's files were read
    assert stats["split_method"] == {"telugu": "official"} and stats["source"] == "vaani"
    speakers = {r["id"]: r["speaker"] for r in man["test"]}
    assert speakers["te_IISc_Vaani_Guntur_004"] == "S1" and speakers["te_stereo44k"] is None
    assert "ARTPARK-IISc/Vaani-transcription-part" in (out / "ATTRIBUTION.md").read_text()
    assert "522001" not in (out / "test.jsonl").read_text()


def test_hf_hang_is_cut_short(monkeypatch) -> None:
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.HfApi, "auth_check", lambda self, *a, **k: time.sleep(30))
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="did not answer") as info:
        vaani.check_hf_access(token=None, timeout=0.5)
    assert time.monotonic() - started < 5 and "HF_TOKEN" in str(info.value)


def _padded_clip(i: int, lead: float, speech: float, tail: float, sr: int = 16000) -> bytes:
    """Quiet room noise, then a tone burst (the 'speech'), then room noise again."""
    rng = np.random.default_rng(i)
    n = [int(s * sr) for s in (lead, speech, tail)]
    x = 0.001 * rng.standard_normal(sum(n))
    t = np.arange(n[1]) / sr
    x[n[0]: n[0] + n[1]] += 0.3 * np.sin(2 * np.pi * 220 * t)
    return encode_audio(x.astype(np.float32), sr)


def test_edge_silence_is_trimmed_to_the_margin(tmp_path: Path) -> None:
    rows = [_row(f"IISc_Vaani_Guntur_{i:03d}.wav", _padded_clip(i, 1.0, 1.5, 0.8), TELUGU[i % len(TELUGU)])
            for i in range(3)]
    _write(tmp_path / "m" / "Telugu" / "part-00000.parquet", rows)
    stats = _run(tmp_path / "m", tmp_path / "out")
    durations = [r["duration"] for rs in _manifests(tmp_path / "out").values() for r in rs]
    # speech 1.5 s + 0.1 s margin on each side, to within the detector's 10 ms hops and 30 ms window
    assert len(durations) == 3 and all(1.6 <= d <= 1.8 for d in durations), durations
    assert stats["trim_silence"] == 0.1
    # another margin is another result: the work log must not hand back the trimmed audio
    stats = _run(tmp_path / "m", tmp_path / "out", trim_margin=None)
    durations = [r["duration"] for rs in _manifests(tmp_path / "out").values() for r in rs]
    assert durations == [3.3] * 3 and stats["run"]["reused"] == 0
    with pytest.raises(ValueError, match="trim-silence"):
        _run(tmp_path / "m", tmp_path / "bad", trim_margin=-1)
