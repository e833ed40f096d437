"""Local files named on the command line or in settings (playbooks, simulation input), read
with a size limit: a wrong path (a 200 MB export, `/dev/zero`) is refused after `limit` bytes
instead of being read whole into memory before any check."""

from __future__ import annotations

from pathlib import Path


class FileTooLarge(ValueError):
    pass


def read_limited(path: Path, limit: int) -> bytes:
    """The file's bytes; `OSError` when it cannot be read, `FileTooLarge` past `limit`."""
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"larger than the limit of {limit:,} bytes")
    return data


def reason(error: Exception) -> str:
    """An error reading or writing a file, without the path an OS error repeats at its end (the
    message names it already, and a long one twice buried the reason between the two)."""
    return str(getattr(error, "strerror", None) or error)
