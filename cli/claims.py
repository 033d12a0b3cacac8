"""Claim files: concurrent ``--skip-existing`` workers split the work instead of repeating it.

``--skip-existing`` only sees outputs that are finished, so two processes started on the
same inputs both code every picture that neither has finished yet. With it, a worker
first *claims* an output: it creates ``<output>.claim`` with ``O_CREAT | O_EXCL`` (atomic,
on local filesystems and NFS v3+ alike), holding its pid, host and start time, and a
worker that finds another's claim skips that input ("claimed by another worker"). A
claim is removed when its input is done, whether it succeeded or failed, and when the
process ends normally (also on Ctrl-C); a clean run leaves none.

A process killed hard (SIGKILL, a lost machine) leaves its claims behind. Such a claim
is stale, and the next worker takes it over, when its host is this host and its pid is
not alive (or is this very process, which did not make it: a container restarted with
the same pid), or when it is older than :data:`STALE_AFTER_S`: the only test possible for
a claim made on another host. A picture that takes longer than that on another host may
be coded twice; the outputs are the same bytes and appear by rename, so nothing breaks.

Taking over is atomic too: the stale claim is renamed to a name of this worker's own
(only one renamer can succeed), checked to be the very file judged stale (else put
back: it was a fresh claim made in between), removed, and then created anew with
``O_EXCL``, which again only one worker wins.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

SUFFIX = ".claim"
STALE_AFTER_S = 3600  # a claim older than an hour is stale whatever its pid (see above)


def claim_path(output: Path) -> Path:
    """``x.icm`` -> ``x.icm.claim`` (folder scans never match ``.claim``)."""
    return output.with_name(output.name + SUFFIX)


_MINE: set[tuple[int, int]] = set()  # (st_dev, st_ino) of the claim files this process holds


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except (OverflowError, ValueError, OSError):
        return False
    return True


def is_stale(path: Path, now: float | None = None) -> bool:
    """Whether the claim at ``path`` may be taken over (see the module docstring). A claim
    that cannot be read whole (being written just now) is stale only by its age."""
    now = time.time() if now is None else now
    try:
        st = path.stat()
        holder = json.loads(path.read_bytes())
        pid, host, started = int(holder["pid"]), str(holder["host"]), float(holder["started"])
    except FileNotFoundError:
        return False  # gone: the caller simply tries to create it again
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return now - path.stat().st_mtime > STALE_AFTER_S
        except OSError:
            return False
    if now - started > STALE_AFTER_S:
        return True
    if host != socket.gethostname():
        return False
    if pid == os.getpid():  # ours, or left by a dead process whose pid we now have (a restarted container)
        return (st.st_dev, st.st_ino) not in _MINE
    return not _alive(pid)


class Claims:
    """The claims of one process. ``take(output)`` is True if this process may code the
    output (it holds the claim, or claims are off); False if another worker holds it.
    ``release(output)`` removes this process's claim; ``release_all()`` all of them."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.held: dict[Path, tuple[int, int]] = {}  # claim path -> (st_dev, st_ino) of our file

    def take(self, output: Path | None) -> bool:
        if not self.enabled or output is None:
            return True
        path = claim_path(output)
        if path in self.held:
            return True
        for _ in range(3):  # create; or take over a stale claim and create again
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                if not is_stale(path) or not self._remove_stale(path):
                    return False
                continue
            except OSError:
                return True  # no claim possible here (read-only folder, ...): writing will say why
            try:
                os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "started": round(time.time(), 3)}).encode())
                st = os.fstat(fd)
            finally:
                os.close(fd)
            self.held[path] = (st.st_dev, st.st_ino)
            _MINE.add(self.held[path])
            return True
        return False

    def _remove_stale(self, path: Path) -> bool:
        """Remove the stale claim at ``path``; False if it turned out to be another's fresh one."""
        try:
            seen = path.stat()
        except FileNotFoundError:
            return True
        grave = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}.stale")
        try:
            os.rename(path, grave)
        except FileNotFoundError:
            return True  # another worker took it over first: try to create it
        except OSError:
            return False
        moved = grave.stat()
        if (moved.st_dev, moved.st_ino) != (seen.st_dev, seen.st_ino) or not is_stale(grave):
            try:  # a fresh claim made since we looked: put it back (unless yet another exists)
                os.link(grave, path)
            except OSError:
                pass
            grave.unlink(missing_ok=True)
            return False
        grave.unlink(missing_ok=True)
        return True

    def release(self, output: Path | None) -> None:
        if output is None:
            return
        path = claim_path(output)
        ident = self.held.pop(path, None)
        if ident is None:
            return
        _MINE.discard(ident)
        try:
            st = path.stat()
            if (st.st_dev, st.st_ino) == ident:  # still ours, not taken over as stale
                path.unlink()
        except FileNotFoundError:
            pass

    def release_all(self) -> None:
        for path in list(self.held):
            self.release(path.with_name(path.name[: -len(SUFFIX)]))
