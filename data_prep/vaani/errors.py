"""The error raised when a requested source cannot be read."""


class SourceUnavailable(RuntimeError):
    """The requested source cannot be read (no access, no network, nothing at PATH)."""
