"""speech_calm."""
