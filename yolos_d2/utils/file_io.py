"""File writing that survives crashes and full disks: the checkpoints, the generated datasets, the tools' outputs."""
import errno
import os
import shutil
import uuid
from typing import IO, Any, Callable, Optional, TypeVar

__all__ = ["WriteError", "create_atomic", "os_error_in", "write_atomic"]

Result = TypeVar("Result")


class WriteError(OSError):
    """
    A file or folder could not be written: ``filename`` is its path, ``errno`` and ``strerror``
    say why (e.g. ENOSPC, "No space left on device"), as the error that stopped the write said.
    """

    def __str__(self) -> str:
        reason = f"{errno.errorcode.get(self.errno, self.errno)} ({self.strerror})" if self.errno else self.strerror
        return f"Could not write {self.filename}: {reason}"


def write_atomic(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """
    Create or replace the local file ``path`` with what ``write(file)`` writes, so that a reader,
    or a process restarted after a crash, finds either the previous file or the complete new one.

    The data goes to a hidden temporary file in the same folder (``.<name>.<random>.tmp``), is
    flushed to disk and renamed over ``path``. The temporary file is removed if ``write`` fails; a
    process killed while writing leaves it behind, and nothing reads it.

    Raises:
        :class:`WriteError` naming ``path`` if the write fails for a reason the system gives (an
        ``OSError``, also one that made ``write`` raise another error, as ``torch.save`` does):
        e.g. a full disk. Other errors of ``write`` are raised as they are.
    """

    def write_file(tmp: str) -> None:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    # Not tempfile.mkstemp, whose files only their owner can read: the usual permissions.
    _replace_atomic(path, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp", write_file)


def create_atomic(path: str, create: Callable[[str], Result]) -> Result:
    """
    Create or replace the local file ``path`` (or create the folder ``path``, or fill it if it is
    an empty one) with what ``create(tmp)`` creates at ``tmp``, a path beside it, for writers
    that take a path rather than a file: as :func:`write_atomic`, a reader finds either the
    previous file or the complete new one, and a failed ``create`` leaves nothing behind.

    ``tmp`` (``.<stem>.<random>.tmp<extension>``) keeps the extension of ``path``, which some
    writers choose the format by (OpenCV's videos). Returns what ``create`` returns; raises as
    :func:`write_atomic`.
    """
    stem, extension = os.path.splitext(os.path.basename(path))

    def create_and_sync(tmp: str) -> Result:
        result = create(tmp)
        _fsync_tree(tmp)
        return result

    return _replace_atomic(path, f".{stem}.{uuid.uuid4().hex[:8]}.tmp{extension}", create_and_sync)


def _replace_atomic(path: str, tmp_name: str, create: Callable[[str], Result]) -> Result:
    """``create(tmp)``, with ``tmp`` the path ``tmp_name`` beside ``path``, then rename ``tmp`` to ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, tmp_name)
    try:
        os.makedirs(directory, exist_ok=True)
        result = create(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        _remove(tmp)
        cause = os_error_in(error) if isinstance(error, (OSError, RuntimeError)) else None
        if cause is None:
            raise
        raise WriteError(cause.errno, cause.strerror or str(cause), path) from error
    if os.name == "posix":  # make the rename itself durable
        _fsync(directory)
    return result


def os_error_in(error: BaseException) -> Optional[OSError]:
    """``error`` if it is an ``OSError``, else the first one it was raised from or while handling."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: str) -> None:
    """Flush the file ``path``, or the files of the folder ``path`` and the folders themselves, to disk."""
    if not os.path.isdir(path):
        _fsync(path)
        return
    for folder, _, names in os.walk(path):
        for name in names:
            _fsync(os.path.join(folder, name))
        if os.name == "posix":
            _fsync(folder)


def _remove(path: str) -> None:
    """Remove the file or folder ``path`` if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
