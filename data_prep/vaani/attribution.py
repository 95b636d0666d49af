"""The ATTRIBUTION.md text for each kind of source."""

from __future__ import annotations

from typing import Any

_ATTRIBUTION = {
    "vaani": """# Attribution

This corpus was derived from **Vaani** by the Indian Institute of Science (IISc) Bangalore and
ARTPARK, funded by Google: the Hugging Face dataset `{repo}`{configs}.

- Licence: Creative Commons Attribution 4.0 International (CC BY 4.0),
  https://creativecommons.org/licenses/by/4.0/
- Project: https://vaani.iisc.ac.in/ — dataset: https://huggingface.co/datasets/{repo}
- Changes made here: rows filtered by language, script, duration and duplicates; transcripts
  normalised; audio downmixed, resampled to 16 kHz, leading/trailing silence trimmed and stored as FLAC; speaker-disjoint splits where
  the source has no official split. Personal fields (pincode, speaker image hash) were not copied.

Keep this notice with any copy or derivative of this corpus.
""",
    "synthetic": """# Attribution

This is a **synthetic** Vaani-shaped corpus, not Vaani data and not human speech. It was generated
offline by `data_prep/synthetic.py` (seed {seed}) for demos and tests:

- speech synthesised with eSpeak NG (GPL-3.0-or-later, via the `espeakng-loader` wheel){festival};
- sentences from templates over a lexicon using Unicode CLDR data via `babel` (Unicode licence) and
  numbers from `num2words` (LGPL-2.1), plus hand-written everyday words and phrases;
- Vaani's column layout and transcript conventions (CC BY 4.0 dataset by IISc/ARTPARK) were imitated,
  none of its content was used.

Do not report results on this corpus as results on Vaani.
""",
    "local": """# Attribution

This corpus was prepared from local files at `{path}` (audio with a transcript table). Their licence
and attribution are those of their source; copy the source's notice here when redistributing.
""",
}


def _attribution(kind: str, **kw: Any) -> str:
    return _ATTRIBUTION[kind].format(**kw)


def _festival_note(info: dict[str, Any] | None) -> str:
    if info and info.get("engines", {}).get("festival"):
        return (",\n  and, for the held-out voice test set only (test_festival.jsonl), Festival with the festvox-te-nsk"
                "\n  diphone voice (free licence, Debian packages festival, festvox-te-nsk)")
    return ""
