"""m_A's CTC output in the anchor's search: drafts give the same transcripts and translations in fewer anchor
forwards; CTC prefix scores (ctc_weight) steer transcripts; both through `Transcriber` and its options."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from speech_calm.speech.guidance import draft_ids, token_labels
from speech_calm.speech.transcribe import Transcriber
from speech_calm.training.recipe import Recipe
from tests import tiny
from tests.speech.test_model import speech_model

torch.set_num_threads(2)


def transcriber(chain: bool, chars: bool = True) -> Transcriber:
    speech = speech_model(chain=chain, chars=chars, script_vocab=chars)
    return Transcriber(speech, Recipe(compose=speech.cfg), Path("."), torch.float32)


def waves() -> list:
    audio, lens = tiny.audio_batch([16000, 9000, 12000, 5000])
    return [audio[i, : int(n)].numpy() for i, n in enumerate(lens)]


@pytest.mark.parametrize("chain,chars", [(True, True), (False, True), (False, False)])
def test_drafted_decoding_gives_the_same_outputs(chain: bool, chars: bool) -> None:
    model = transcriber(chain, chars)
    tasks = ["transcribe", "translate"]
    plain = model.decode(waves(), tasks, replace(model.decoding, draft=False))
    forwards = model.stats.forwards
    model.stats.forwards = 0
    drafted = model.decode(waves(), tasks, replace(model.decoding, draft=True))
    for a, b in zip(plain, drafted):
        assert {t: (a[t].text, a[t].tokens) for t in tasks} == {t: (b[t].text, b[t].tokens) for t in tasks}
    assert model.stats.drafted > 0  # the drafts were read (a random m_A's drafts are mostly wrong)
    assert forwards > 0 and model.stats.forwards <= forwards


def test_a_draft_is_the_transcript_as_the_anchor_writes_it() -> None:
    chained, plain = transcriber(True).speech, transcriber(False).speech
    text = "నా పేరు రాము"
    assert draft_ids(chained, text, "translate") == chained.target_ids(text, "transcribe")[:-1] + \
        [chained.transcript_end]
    assert draft_ids(plain, text, "transcribe") == plain.target_ids(text, "transcribe")
    assert draft_ids(plain, text, "translate") == []  # English is not m_A's to draft
    labels = token_labels(chained, chained.tower.tower.vocab)
    telugu = chained.token_ids("న")
    assert len(telugu) == 1 and labels[telugu[0]] == tuple(chained.tower.tower.vocab.encode("న"))
    assert not any(t in labels for t in chained.token_ids("My name"))


def test_ctc_weight_steers_transcripts_and_is_checked() -> None:
    model = transcriber(True)
    plain = model.decode(waves(), ["transcribe"], replace(model.decoding, draft=False))
    joint = model.decode(waves(), ["transcribe"], model.decoding_for(3.0, ctc_weight=0.9, draft=False))
    drafted = model.decode(waves(), ["transcribe"], model.decoding_for(3.0, ctc_weight=0.9, draft=True))
    assert [r["transcribe"].tokens for r in joint] == [r["transcribe"].tokens for r in drafted]
    assert [r["transcribe"].text for r in joint] != [r["transcribe"].text for r in plain]
    with pytest.raises(ValueError, match="ctc_weight"):
        model.decoding_for(3.0, ctc_weight=1.0)
