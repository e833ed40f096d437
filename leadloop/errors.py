"""One exception tree, for bugs and broken infrastructure.

Expected outcomes (a rejected payload, a refused merge, a skipped conversion) are
returned values, not exceptions. What is raised:

    LeadloopError
    ├── ConfigError          settings or playbook cannot be used
    │   └── PlaybookError    names the file, line and field
    ├── StorageError         the database is unreachable or its schema is wrong
    └── Overloaded           the writer is saturated; callers answer 429
"""

from __future__ import annotations

import unicodedata


def escaped(text: str) -> str:
    """`text` with its control characters (line breaks, ESC, NUL) written as escapes: a path or
    value quoted in a message is shown, not run by the terminal or split over lines."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in text)


class LeadloopError(Exception):
    pass


class ConfigError(LeadloopError):
    pass


class PlaybookError(ConfigError):
    def __init__(self, file: str, line: int | None, field: str, message: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        # A file name may hold any character but NUL: a line break split the message (scripts
        # keep the last line), an escape sequence reached the terminal.
        shown = escaped(file)
        where = f"{shown}:{line}" if line is not None else shown
        # A YAML syntax error names no field: "file:3: message", not "file:3: : message".
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class StorageError(LeadloopError):
    pass


class Overloaded(LeadloopError):
    def __init__(self, retry_after: int = 1) -> None:
        self.retry_after = retry_after
        super().__init__(f"writer saturated; retry after {retry_after}s")
