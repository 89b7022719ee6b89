"""Private files: directories and files that no other local user can plant, read or redirect.

The Python side of csrc/common/private_files.h, with the same checks and the
same messages (docs/operations.md, "Tokens"). The token directory may be a
predictable path in /tmp, where another user can create it first or plant a
symlink or a file in it. So:

- a private directory is checked with lstat: a directory, not a symlink,
  owned by this uid, with no group or other permission bits; its parent must
  be owned by this uid or root, and sticky when others may write to it;
- a file is opened with O_NOFOLLOW (and O_NONBLOCK, so a planted FIFO cannot
  block us) and checked with fstat on the open descriptor: a regular file,
  owned by this uid, without the permission bits it must not have.

Every failure raises PrivateFileError naming the path, what is wrong and the
fix. The unsafe_* checks are pure functions of an os.stat_result.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Optional

OWNER_ONLY = 0o077
"""Forbidden bits of a secret (a token): no group/other access at all (0600)."""
WORLD_READ = 0o022
"""Forbidden bits of a file that is not secret (lock, log, port file): nobody else may write it."""
MAX_PRIVATE_FILE_BYTES = 64 * 1024
"""The largest file read_private_file reads: tokens and port files are a line."""

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class PrivateFileError(RuntimeError):
    """A private directory or file is missing its protection, or cannot be made."""


def _owner_problem(st: os.stat_result, uid: int) -> str:
    return f"is owned by uid {st.st_uid}, not by this user (uid {uid})"


def unsafe_dir(st: os.stat_result, uid: int) -> str:
    """Why a directory with this lstat result is not private to uid, or '' when it is."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != uid:
        return _owner_problem(st, uid)
    if st.st_mode & 0o077:
        return (f"has mode {stat.S_IMODE(st.st_mode):04o}, so other users can see or change it "
                "(it must be 0700: chmod 700 it)")
    return ""


def unsafe_parent(st: os.stat_result, uid: int) -> str:
    """Why the parent of a private directory (stat result) lets others replace it, or ''."""
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid not in (uid, 0):
        return _owner_problem(st, uid) + " or root"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        return (f"has mode {stat.S_IMODE(st.st_mode):04o}: others may write to it and it is not sticky, "
                "so they could replace what is in it")
    return ""


def unsafe_file(st: os.stat_result, uid: int, forbidden: int) -> str:
    """Why a file with this fstat result is not ours without the `forbidden` bits, or ''."""
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != uid:
        return _owner_problem(st, uid)
    if st.st_mode & forbidden:
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        if forbidden == OWNER_ONLY:
            return f"has mode {mode}, so other users can read or change it (it must be 0600)"
        return f"has mode {mode}, so other users can change it"
    return ""


def _fail(what: str, path: str, problem: str, fix: str) -> PrivateFileError:
    return PrivateFileError(f"{what} {path} {problem}: {fix}")


def _fail_errno(what: str, call: str, path: str, e: OSError, fix: str) -> PrivateFileError:
    return PrivateFileError(f"cannot {call} {what} {path}: {e.strerror} ({fix})")


def check_private_dir(path: str, what: str, fix: str) -> bool:
    """Checks that `path` and its parent are private. False when `path` does not exist;
    raises PrivateFileError when it is not private."""
    path = os.path.normpath(path)
    parent = os.path.dirname(path) or "."
    try:
        parent_st = os.stat(parent)  # follows symlinks: only the leaf is ours to insist on
    except FileNotFoundError:
        return False
    except OSError as e:
        raise _fail_errno(what, "inspect the parent of", path, e, fix) from e
    problem = unsafe_parent(parent_st, os.getuid())
    if problem:
        raise _fail(what, path, f"is in {parent}, which {problem}", fix)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise _fail_errno(what, "inspect", path, e, fix) from e
    problem = unsafe_dir(st, os.getuid())
    if problem:
        raise _fail(what, path, problem, fix)
    return True


def ensure_private_dir(path: str, what: str, fix: str) -> None:
    """Creates `path` (mode 0700; the leaf only, its parent must exist) unless it exists,
    then checks it as check_private_dir does."""
    if check_private_dir(path, what, fix):
        return
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # made by a racing process, or planted: checked below either way
    except OSError as e:
        raise _fail_errno(what, "create", path, e, fix) from e
    if not check_private_dir(path, what, fix):
        raise PrivateFileError(f"cannot create {what} {path}: its parent does not exist ({fix})")


def open_private(path: str, flags: int, what: str, fix: str, forbidden: int = OWNER_ONLY) -> int:
    """os.open(path, flags) without following a symlink, new files mode 0600, checked on the
    descriptor (regular, ours, none of the `forbidden` bits). Returns the descriptor;
    FileNotFoundError passes through when `flags` has no O_CREAT."""
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, 0o600)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise _fail(what, path, "is a symlink", fix) from e
        raise _fail_errno(what, "open", path, e, fix) from e
    try:
        problem = unsafe_file(os.fstat(fd), os.getuid(), forbidden)
        if problem:
            raise _fail(what, path, problem, fix)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private_file(path: str, what: str, fix: str, forbidden: int = OWNER_ONLY) -> Optional[str]:
    """The text of an existing file, opened and checked as open_private does; None when it
    does not exist. Raises PrivateFileError when it is not ours or is over MAX_PRIVATE_FILE_BYTES."""
    try:
        fd = open_private(path, os.O_RDONLY, what, fix, forbidden)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_PRIVATE_FILE_BYTES + 1)
    if len(data) > MAX_PRIVATE_FILE_BYTES:
        raise _fail(what, path, f"is over the {MAX_PRIVATE_FILE_BYTES} bytes a private file may hold", fix)
    return data.decode("utf-8", errors="replace")
