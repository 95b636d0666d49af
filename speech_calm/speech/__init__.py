"""The speech product: audio, Indic text, segmentation, manifests, the speech composition as a task model,
the Transcriber, evaluation, metrics, output formats and alignment plots."""

