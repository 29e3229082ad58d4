"""Reading a streamed body chunk by chunk: `Lines` splits it as both streamed answers (an
export's NDJSON, a watch's Server-Sent Events) want, and `ExportReader` turns an export's lines
into records."""

from __future__ import annotations

import re

import httpx

from .models import ListedRecord
from .parsing import parse_export_line

__all__ = ["ExportReader", "Lines"]

_EOL = re.compile(rb"\r\n|\r|\n")


class Lines:
    """Bytes in, whole lines out, split at CR, LF and CRLF only.

    Not `httpx`'s `iter_lines`: that splits as `str.splitlines` does, also at U+0085, U+2028
    and the other separators JSON text may hold unescaped inside a string.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._after_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the LF of a CRLF split between chunks
        self._after_cr = chunk[-1:] == b"\r"
        lines = []
        start = 0
        for match in _EOL.finditer(chunk):
            self._parts.append(chunk[start : match.start()])
            lines.append(b"".join(self._parts))
            self._parts = []
            start = match.end()
        if start < len(chunk):
            self._parts.append(chunk[start:])
        return lines

    def rest(self) -> bytes:
        """What came after the last line end (an unterminated last line), emptied."""
        rest = b"".join(self._parts)
        self._parts = []
        return rest


class ExportReader:
    """Reads an export's NDJSON body, chunk by chunk, into records: memory holds one line."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._lines = Lines()

    def feed(self, chunk: bytes) -> list[ListedRecord]:
        lines = self._lines.feed(chunk)
        return [parse_export_line(line, self._response) for line in lines if line.strip()]

    def end(self) -> list[ListedRecord]:
        rest = self._lines.rest()
        return [parse_export_line(rest, self._response)] if rest.strip() else []
