"""SQLite: a consistent copy of a live database file, while writes go on.

SQLite's online backup API copies every page in one step, inside one read transaction on a
connection of its own: the copy is the database as one commit left it.  In WAL mode that read
holds up no writer (the store's checkpoints are PASSIVE); the WAL only grows until it is done.
A file copy (`cp`) is not a backup: the newest commits live in the `-wal` file until a
checkpoint, and a copy taken during a write is torn.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from ..base import StoreUnavailable
from .sqlite_connection import unavailable

__all__ = ["backup"]


def _sync_folder(folder: Path) -> None:
    """Make a rename into `folder` durable (POSIX: fsync the directory)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


async def backup(source: str, target: str, busy_timeout: float) -> None:
    """A consistent copy of the live database file `source` at `target` (which must not
    exist), through SQLite's online backup API in one step: one read transaction, so the copy
    is the database as some commit left it, however many writers go on meanwhile.  Written
    to a temporary file beside `target` and renamed into place once complete."""
    target_path = Path(target)
    if target_path.exists():
        raise FileExistsError(f"{target} already exists: remove it or choose another path")
    if source in ("", ":memory:"):
        raise ValueError("An in-memory SQLite database cannot be backed up by this command")
    if target_path.resolve() == Path(source).resolve():
        raise ValueError("The backup must go to another file than the database itself")
    partial = target_path.with_name(f".{target_path.name}.partial-{os.getpid()}")

    if not Path(source).is_file():
        raise FileNotFoundError(f"No database file {source}")

    def copy() -> None:
        src = sqlite3.connect(source, timeout=busy_timeout)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # pages=-1: every page in one step, one snapshot
                # The copy stays a single file (no -wal beside it) until it is opened again.
                dst.execute("PRAGMA journal_mode = DELETE").fetchall()
            finally:
                dst.close()
        finally:
            src.close()
        os.replace(partial, target_path)
        _sync_folder(target_path.parent)

    try:
        await asyncio.to_thread(copy)
    except sqlite3.OperationalError as exc:
        partial.unlink(missing_ok=True)
        raise unavailable(exc) or StoreUnavailable(f"SQLite: {exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
