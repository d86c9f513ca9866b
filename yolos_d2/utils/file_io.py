"""File writing that survives crashes, shared by the checkpoints and the generated datasets."""
import os
import uuid
from typing import IO, Any, Callable

__all__ = ["write_atomic"]


def write_atomic(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """
    Create or replace the local file ``path`` with what ``write(file)`` writes, so that a reader,
    or a process restarted after a crash, finds either the previous file or the complete new one.

    The data goes to a hidden temporary file in the same folder (``.<name>.<random>.tmp``), is
    flushed to disk and renamed over ``path``. The temporary file is removed if ``write`` fails; a
    process killed while writing leaves it behind, and nothing reads it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Not tempfile.mkstemp, whose files only their owner can read: the usual permissions.
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
