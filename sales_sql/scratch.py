"""sales_sql's temporary folders: each named after its process (sales_sql-KIND-PID-xxxx in the temporary folder),
removed by its owner when done, else at interpreter exit, else (the process was killed) by the next sales_sql process
that makes one."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "sales_sql-"


def folder(kind: str) -> Path:
    """A new temporary folder for `kind` (a word, no '-'); remove() it when done."""
    sweep()
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{os.getpid()}-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def sweep() -> None:
    """Remove the folders of sales_sql processes that no longer run."""
    for old in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            remove(old)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
