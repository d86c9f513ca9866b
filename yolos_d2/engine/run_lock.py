"""One run per output folder: a lock file naming the process that writes there."""
import errno
import fcntl
import json
import logging
import os
import socket
import time
from typing import Optional, Set

__all__ = ["LOCK_FILE", "OutputDirError", "RunLock"]

LOCK_FILE = "run.lock"

logger = logging.getLogger(__name__)

# The locks this process holds. A forked process (a data-loader worker) shares the open file, and
# with it the flock, which would outlive a killed holder as long as the child runs: each child
# closes its copies at once (see _forget_locks_in_child).
_HELD: Set["RunLock"] = set()


class OutputDirError(RuntimeError):
    """``train.output_dir`` cannot be used: another run holds it, or it cannot be written."""


class RunLock:
    """
    Holds ``<output_dir>/run.lock`` while a run writes into ``output_dir``, as a context manager.

    The file holds the process id, host and start time of its holder, and the holder keeps an
    exclusive ``flock`` on it, which the system releases when the process ends, however it ends;
    processes it forks (data-loader workers) do not keep it, nor do those it starts.
    Taking the lock:

    - while another process holds it fails at once with :class:`OutputDirError` naming that
      process and host;
    - when a run ended without removing the file (killed), takes it over with a log line naming
      the run that left it, if that run was on this host. A file left by a run on another host is
      refused, as whether that run still runs cannot be told from here (the lock of a shared
      file system may not reach it): the message says to delete the file if it does not;
    - in a folder that cannot be created or written (read-only, full) fails with
      :class:`OutputDirError` saying so, before anything else is written there.

    Released (the file removed) when the ``with`` block ends.
    """

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILE)
        self._fd: Optional[int] = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise :class:`OutputDirError`."""
        try:
            if self.output_dir:
                os.makedirs(self.output_dir, exist_ok=True)
            fd = self._open_locked()
        except OSError as e:
            raise self._not_writable(e) from None
        left_by = _read_record(fd)
        if left_by is not None:
            try:
                self._take_over(left_by)
            except OutputDirError:
                os.close(fd)
                raise
        try:
            _write_record(fd)
        except OSError as e:
            os.unlink(self.path)  # this process holds the lock: nobody else uses the file
            os.close(fd)
            raise self._not_writable(e) from None
        self._fd = fd
        _HELD.add(self)

    def release(self) -> None:
        """Remove the file and drop the lock."""
        if self._fd is None:
            return
        _HELD.discard(self)
        os.unlink(self.path)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def _open_locked(self) -> int:
        """The lock file, opened and locked; raises :class:`OutputDirError` while another process holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_record(fd)
                os.close(fd)
                raise OutputDirError(
                    f"train.output_dir={self.output_dir!r} is in use by another run: {_describe(holder)} holds "
                    f"{self.path}. Wait for that run to end, or give this one another train.output_dir."
                ) from None
            if _same_file(fd, self.path):
                return fd
            # The holder released it (removing the file) between the open and the lock: again.
            os.close(fd)

    def _take_over(self, left_by: dict) -> None:
        if left_by.get("host") != socket.gethostname():
            raise OutputDirError(
                f"train.output_dir={self.output_dir!r} may be in use by another run: {_describe(left_by)} left "
                f"{self.path}, and whether it still runs cannot be told from this host. If it does not, delete "
                "the file; or give this run another train.output_dir."
            )
        logger.warning(f"Taking over {self.path}, left by {_describe(left_by)}, which ended without removing it.")

    def _not_writable(self, error: OSError) -> OutputDirError:
        return OutputDirError(
            f"train.output_dir={self.output_dir!r} is not a writable folder: {error.strerror or error} "
            f"({errno.errorcode.get(error.errno, 'error')}: {error.filename or self.path})"
        )


def _forget_locks_in_child() -> None:
    """In a forked child: close the copies of the lock files, which the parent alone holds."""
    for lock in list(_HELD):
        os.close(lock._fd)
        lock._fd = None
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def _read_record(fd: int) -> Optional[dict]:
    """The holder written in the lock file, None if it is empty (just created)."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 4096)
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"pid": "?", "host": "?", "started": f"unreadable record {data[:60]!r}"}


def _write_record(fd: int) -> None:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(record).encode())
    os.fsync(fd)  # a full disk fails here, if not before


def _describe(record: Optional[dict]) -> str:
    if not record:
        return "a process starting up"
    return f"process {record.get('pid')} on host {record.get('host')} (started {record.get('started')})"


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
