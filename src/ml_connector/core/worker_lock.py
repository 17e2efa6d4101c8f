"""One DBOS executor per SQLite database: an exclusive OS lock on a file next to it.

On SQLite every process uses the same executor id (so a restarted worker recovers its
runs), so two processes running DBOS on one database would recover and run the same
workflows. The first process to launch DBOS takes this lock and is the worker; others
hand their work to it through the DBOS client. `flock` locks belong to the open file
and die with the process, so a SIGKILLed worker leaves nothing stale behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ml_connector.core.db import is_sqlite

LOCK_SUFFIX = ".worker.lock"


def lock_path(database_url: str) -> Path | None:
    """The lock file of a SQLite database file; None where no lock is needed (Postgres, in-memory)."""
    if not is_sqlite(database_url) or ":memory:" in database_url:
        return None
    file = database_url.split("///", 1)[-1].split("?", 1)[0]
    if not file:
        return None
    return Path(file).resolve().with_name(Path(file).name + LOCK_SUFFIX)


@dataclass(frozen=True)
class Holder:
    pid: int | None
    role: str | None
    ready: bool = False  # the holder has launched DBOS (its system tables exist, it dequeues)

    def describe(self) -> str:
        who = f"`ml-connector {self.role}`" if self.role else "another ml-connector process"
        return f"{who} (pid {self.pid if self.pid is not None else 'unknown'})"


class WorkerBusy(RuntimeError):
    """The database already has its worker (another process holds the lock)."""

    def __init__(self, path: Path, holder: Holder) -> None:
        self.path, self.holder = path, holder
        super().__init__(
            f"data directory {path.parent} is in use by {holder.describe()}: only one process may run "
            f"the engine on a SQLite database (lock file {path}). Stop that process first, or use "
            "Postgres for several workers.")


class WorkerLock:
    """The exclusive lock of one database file, held by this process once acquired."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._role = ""

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, role: str) -> bool:
        """Take the lock without waiting; on success record this process as the holder."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC (Python's default): a program this process execs does not inherit the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._role = role
        self._write(ready=False)
        return True

    def mark_ready(self) -> None:
        """Tell waiting processes that this worker has launched and takes work."""
        if self._fd is not None:
            self._write(ready=True)

    def _write(self, *, ready: bool) -> None:
        assert self._fd is not None
        data = json.dumps({"pid": os.getpid(), "role": self._role, "ready": ready}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def holder(self) -> Holder:
        """Who holds the lock, as it wrote itself into the file."""
        # The holder writes right after taking the lock: an empty file means "just now".
        for _ in range(20):
            try:
                raw = self.path.read_text(encoding="utf-8")
            except OSError:
                raw = ""
            if raw.strip():
                try:
                    data = json.loads(raw)
                    return Holder(int(data["pid"]), str(data.get("role") or "") or None, bool(data.get("ready")))
                except (ValueError, KeyError, TypeError):
                    break
            time.sleep(0.01)
        return Holder(None, None)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None
