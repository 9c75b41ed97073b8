"""One training job per ``bundle_root``: a lock file holding the pid of the job that writes there.

Killing only the ``torchrun`` launcher leaves its workers running, and writing ``models/``. A second job started on
the same ``bundle_root`` would then interleave its writes with theirs. :class:`BundleLock` makes the second job
refuse to start while the first holds the lock (its process is alive), and takes over a lock whose process is gone.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import socket
import time

from ignite.engine import Engine, Events

from ..utils.atomic import write_text_atomically
from ..utils.dist import broadcast_from_main, is_main_process
from ..utils.errors import at_failed_exit

__all__ = ["BundleLock", "BundleLockedError"]

logger = logging.getLogger(__name__)


class BundleLockedError(RuntimeError):
    """Another live process holds the lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_exclusively(fd: int) -> None:
    """``flock(fd, LOCK_EX)``, waiting for another process's; nothing where the file system has no ``flock``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as e:
        logger.debug(f"no flock on this file system ({e}); the lock is taken unguarded")


class BundleLock:
    """A lock file (default ``models/.lock``) held by rank 0 from the start of a training run to its end.

    Args:
        path: the lock file.
        name: what the lock protects, for messages (e.g. the bundle root).
    """

    def __init__(self, path: str, name: str = "") -> None:
        self.path = path
        self.name = name or os.path.dirname(os.path.dirname(os.path.abspath(path)))
        self.held = False  # by this job, on every rank
        self.wrote_file = False  # this process wrote the lock file (rank 0 of the job)

    def attach(self, engine: Engine) -> None:
        """Take the lock (unless already held) and release it when the run completes or the process exits; a killed
        process leaves the lock behind, and the next job takes it over.

        :class:`~.run_safety.RunSafetyHandler` attaches it to the trainer; the training configs have taken it (with
        :meth:`acquire`) in their ``run`` before building the trainer, so that a refused job writes nothing."""
        self.acquire()
        engine.add_event_handler(Events.COMPLETED, self.release)

    def holder(self) -> dict | None:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        """Take the lock for this job: rank 0 writes the lock file, refusing when a live process on this host holds
        it. Under ``torch.distributed`` every rank then learns rank 0's outcome (a collective: every rank calls
        ``acquire``, the training configs in their ``run``), so that a refused job stops on every rank before any of
        them writes anything (a datalist, say). Taking a held lock again does nothing.

        Jobs look at and write the lock one at a time (an exclusive ``flock`` on the lock's folder, which creates no
        file), so that of two jobs started at the same moment one takes the lock and the other sees it held (on a file
        system without ``flock`` they do it as before, unguarded). A lock whose process is
        gone, that cannot be read, or that was written on another host (whose processes cannot be checked from here,
        e.g. a restarted container or another node) is taken over with a warning.

        Raises:
            BundleLockedError: naming the holder and how to stop it, on every rank.
        """
        if self.held:
            return
        failure = None
        if is_main_process():
            try:
                self._write_lock_file()
            except Exception as e:  # raised below on every rank: the others would otherwise wait for rank 0 forever
                failure = e
        failure = broadcast_from_main(failure)
        if failure is not None:
            raise failure
        self.held = True  # by this job (its rank 0): a second acquire of any rank does nothing

    def _write_lock_file(self) -> None:
        """Rank 0's part of :meth:`acquire`: refuse a live holder, else write this process's lock file, released at
        exit."""
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        guard = os.open(folder, os.O_RDONLY)
        try:
            _lock_exclusively(guard)
            if os.path.exists(self.path):
                holder = self.holder()
                self._refuse_a_live_holder(holder)
                self._warn_taking_over(holder)
            mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            write_text_atomically(json.dumps(mine), self.path)
            self.wrote_file = True
        finally:
            os.close(guard)  # releases the flock
        atexit.register(self.release)
        at_failed_exit(self.release)

    def _refuse_a_live_holder(self, holder: dict | None) -> None:
        if holder is None or holder.get("host") != socket.gethostname() or holder.get("pid") == os.getpid():
            return
        if _alive(int(holder["pid"])):
            raise BundleLockedError(
                f"{self.name} is being trained by process {holder['pid']} (since {holder.get('started', '?')}; "
                f"lock {self.path}). Stop it first (e.g. kill {holder['pid']}; killing only a torchrun launcher "
                "leaves its workers running) or use another --bundle_root."
            )

    def _warn_taking_over(self, holder: dict | None) -> None:
        if holder is None:
            logger.warning(f"taking over {self.path}: it cannot be read")
        elif holder.get("host") != socket.gethostname():
            logger.warning(f"taking over {self.path}, written by process {holder.get('pid')} on host "
                           f"{holder.get('host')!r} (since {holder.get('started', '?')}), which cannot be checked from "
                           f"here: make sure that job has ended")
        elif holder.get("pid") != os.getpid():
            logger.warning(f"taking over {self.path}: its process {holder['pid']} is gone")

    def release(self, engine: Engine | None = None) -> None:
        if self.held and self.wrote_file:  # only the process that wrote it: another rank may have the same pid
            holder = self.holder()
            if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                os.remove(self.path)
        self.held = self.wrote_file = False
