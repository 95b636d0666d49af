"""The Hugging Face Hub: token, access check, a timeout guard for calls that can hang, the rows of
one config of a Hub dataset (with a fallback to listing its parquet files), and the main Vaani repo's
files that carry speaker IDs."""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import PurePosixPath
from typing import Any, Callable, Iterator

from data_prep.vaani.errors import SourceUnavailable
from data_prep.vaani.rows import (
    Row,
    _official_split,
    _split_from_path,
    iter_parquet_rows,
    rows_from_dataset,
)

log = logging.getLogger("data_prep.vaani")  # one logger for the whole package, as before the split

HF_REPO = "ARTPARK-IISc/Vaani-transcription-part"
HF_MAIN_REPO = "ARTPARK-IISc/Vaani"
HF_TIMEOUT_S = 20.0


def _hf_token() -> str | None:
    """HF token from HF_TOKEN or the local HF cache (``huggingface-cli login``); never printed."""
    from huggingface_hub import get_token

    return get_token()


def with_timeout(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run ``fn`` in a daemon thread so that a black-holed network cannot hang the command."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise SourceUnavailable(f"{what} did not answer within {timeout:.0f} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


_HF_HELP = (
    "To use --source hf: accept the dataset's terms at https://huggingface.co/datasets/{repo} while "
    "logged in, then create a read token at https://huggingface.co/settings/tokens and set HF_TOKEN "
    "(or run `huggingface-cli login`).  Without access, use --source local PATH (a Vaani parquet "
    "mirror, or audio files with a transcript TSV/CSV) or --source synthetic (offline)."
)


def check_hf_access(repo: str = HF_REPO, token: str | None = None, timeout: float = HF_TIMEOUT_S) -> None:
    """Raise :class:`SourceUnavailable` with a clear message unless ``repo`` can be read now."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise SourceUnavailable("HF_HUB_OFFLINE is set, so the Hub cannot be reached.\n" + _HF_HELP.format(repo=repo))
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        with_timeout(lambda: HfApi().auth_check(repo, repo_type="dataset", token=token), timeout,
                      "the Hugging Face Hub")
    except GatedRepoError:
        raise SourceUnavailable(
            f"{repo} is gated and this account has not been granted access."
            + ("" if token else " No HF token was found.") + "\n" + _HF_HELP.format(repo=repo)
        ) from None
    except RepositoryNotFoundError:
        raise SourceUnavailable(
            f"{repo} was not found or needs a token (" + ("token rejected" if token else "no HF token found")
            + ").\n" + _HF_HELP.format(repo=repo)
        ) from None
    except SourceUnavailable as exc:
        raise SourceUnavailable(f"Cannot reach the Hugging Face Hub: {exc}.\n" + _HF_HELP.format(repo=repo)) from None
    except Exception as exc:  # noqa: BLE001 - network errors differ between hub versions (requests/httpx)
        raise SourceUnavailable(
            f"Cannot reach the Hugging Face Hub ({type(exc).__name__}: {exc}).\n" + _HF_HELP.format(repo=repo)
        ) from None


def _hf_parquet_files(repo: str, config: str, token: str | None) -> list[str]:
    """Parquet files of ``config`` in ``repo``, found by listing (for configs that fail to load)."""
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem(token=token)
    files = with_timeout(lambda: fs.glob(f"datasets/{repo}/**/*.parquet"), 120, "listing the repo")
    want = config.strip("/").lower().split("/")
    picked = []
    for f in files:
        parts = [p.lower() for p in PurePosixPath(f).parts[3:-1]]  # skip datasets/owner/name
        # the config's path components appear in order among the file's folders (Telugu, audio/Telugu,
        # AndhraPradesh/Anantpur ...)
        if any(parts[i:i + len(want)] == want for i in range(len(parts))):
            picked.append(f)
    return sorted(picked)


def iter_hf_rows(repo: str, config: str, splits: list[str] | None, token: str | None) -> Iterator[Row]:
    """Stream rows of one config of a Hub dataset, keeping its official splits.

    Uses ``datasets.load_dataset(..., streaming=True)`` with undecoded audio (soundfile decodes it
    later, so FFmpeg/torchcodec are not needed).  When the config cannot be loaded, falls back to
    listing the repo's parquet files for that config and reading them with pyarrow over HfFileSystem.
    """
    try:
        import datasets

        loaded = with_timeout(
            lambda: datasets.load_dataset(repo, config, streaming=True, token=token), 300, "loading the config"
        )
        for split_name, ds in loaded.items():
            if splits and _official_split(split_name) not in splits:
                continue
            ds = ds.cast_column("audio", datasets.Audio(decode=False))
            yield from rows_from_dataset(ds, split_name)
        return
    except SourceUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the builder fails in many ways when configs change
        log.warning("loading config %r of %s failed (%s); listing its parquet files instead", config, repo, exc)
    from huggingface_hub import HfFileSystem

    files = _hf_parquet_files(repo, config, token)
    if not files:
        raise SourceUnavailable(f"{repo} has no parquet files for config {config!r}; check --config")
    if splits:
        files = [f for f in files if _split_from_path(f) in splits]
    fs = HfFileSystem(token=token)
    yield from iter_parquet_rows(files, open_file=fs.open)


def _hf_speaker_files(districts: set[tuple[str, str]], token: str | None) -> list[str]:
    """Parquet files of the main Vaani repo for the (state, district) pairs seen in the data."""
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem(token=token)
    files = with_timeout(lambda: fs.glob(f"datasets/{HF_MAIN_REPO}/audio/*/*/*.parquet"), 300, "listing Vaani")

    def squash(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    wanted = {(squash(s), squash(d)) for s, d in districts}
    parts = {f: PurePosixPath(f).parts for f in files}
    return sorted(f for f, p in parts.items() if (squash(p[-3]), squash(p[-2])) in wanted)
