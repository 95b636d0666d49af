"""The frozen models: our Conformer-CTC, CTC heads and compression, Hugging Face wrappers, small LMs, and
loading from a hub id, a directory, a .gguf file or a Python package."""

