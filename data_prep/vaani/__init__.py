"""Vaani speech data -> speaker-disjoint manifests of 16 kHz mono FLAC.

Usage (see ``--help``)::

    python data_prep/vaani.py --source synthetic --out data/vaani/telugu            # offline demo corpus
    python data_prep/vaani.py --source hf --language telugu --out data/vaani/telugu  # needs HF_TOKEN
    python data_prep/vaani.py --source local /data/vaani_mirror --out data/vaani/telugu

Sources, all ending in the same processing:

* ``hf``: ``ARTPARK-IISc/Vaani-transcription-part`` streamed from the Hugging Face Hub (one config per
  language, e.g. ``Telugu``; official splits kept).  If the config does not load (config names changed
  between releases), its parquet files are listed and read directly.  ``--speakers`` joins speaker IDs
  from the main ``ARTPARK-IISc/Vaani`` repo by audio file name.
* ``local PATH``: a mirror of Vaani parquet files, or a folder of audio files with a transcript
  TSV/CSV.  Speaker tables found in the mirror (parquet with ``speakerID`` but no audio) are joined.
* ``synthetic``: a Vaani-shaped corpus made offline by TTS (``data_prep/synthetic.py``), written as
  Vaani-format parquet under ``OUT/_vaani_mirror`` and then processed as ``local``.

Processing per row: language filter, transcript normalisation and script check, path sanitising,
duplicate removal, duration filter, decode + downmix + resample to 16 kHz, leading/trailing silence
trimmed (``--trim-silence``), FLAC.  Rows that fail are
counted by reason in ``stats.json``.  Decoding runs in ``--num-workers`` processes.  A work log under
``OUT/_work`` makes reruns resume without redoing finished audio; every output file is written to a
temporary name and renamed, and manifests are sorted so reruns are byte-identical.

Outputs: ``OUT/{train,dev,test}.jsonl``, ``OUT/audio/<id>.flac``, ``OUT/stats.json``,
``OUT/ATTRIBUTION.md``.
"""

# One concept per module; imports point one way (cli -> pipeline -> the rest):
#   errors      SourceUnavailable
#   rows        Row, column aliases, split names, parquet / `datasets` / table readers
#   speakers    speaker tables (audio file name -> speaker ID)
#   local       --source local: what PATH holds, transcript-table rows, the synthetic marker
#   hub         --source hf: token, access check, with_timeout, Hub rows, speaker files of the main repo
#   audio_jobs  decoding one clip (worker processes), silence trimming, the resumable work log
#   screening   cheap per-row checks in source order, output ids, candidates and drop counts
#   splits      official / speaker-disjoint splits and their statistics
#   outputs     manifest records, stats.json, atomic writes, orphan removal
#   attribution ATTRIBUTION.md texts
#   pipeline    prepare(): source -> screen -> decode pool -> splits -> outputs
#   cli         the command line (python data_prep/vaani.py, python -m data_prep.vaani)

# Public names of the single-file module that were not in __all__; still importable from here.
from data_prep.vaani.audio_jobs import TRIM_MARGIN_S, trim_silence  # noqa: F401
from data_prep.vaani.cli import main
from data_prep.vaani.errors import SourceUnavailable
from data_prep.vaani.hub import (
    HF_MAIN_REPO,
    HF_REPO,
    HF_TIMEOUT_S,  # noqa: F401
    check_hf_access,
    iter_hf_rows,
    with_timeout,
)
from data_prep.vaani.local import (
    discover_local,  # noqa: F401
    iter_table_rows,
)
from data_prep.vaani.outputs import MANIFEST_KEYS
from data_prep.vaani.pipeline import prepare
from data_prep.vaani.rows import (
    PRIVATE_COLUMNS,  # noqa: F401
    Row,
    iter_parquet_rows,
    rows_from_dataset,
)
from data_prep.vaani.screening import (
    DROP_REASONS,
    MIN_SCRIPT_FRACTION,  # noqa: F401
)
from data_prep.vaani.speakers import load_speaker_map  # noqa: F401
from data_prep.vaani.splits import SPLIT_FRACTIONS, SPLITS, assign_splits  # noqa: F401

__all__ = [
    "HF_REPO",
    "HF_MAIN_REPO",
    "MANIFEST_KEYS",
    "DROP_REASONS",
    "Row",
    "SourceUnavailable",
    "prepare",
    "assign_splits",
    "iter_parquet_rows",
    "iter_table_rows",
    "iter_hf_rows",
    "rows_from_dataset",
    "check_hf_access",
    "main",
    "with_timeout",
]
