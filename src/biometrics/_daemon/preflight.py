"""What both daemons check before they start, so that a typo stops them with the path and the fix.

A daemon that silently creates a mistyped spool watches a directory nobody writes into; one
that finds its state unusable only after printing where it listens sends the operator to the
wrong option.  These checks run before anything is bound or created, and every error names the
path, what is wrong with it and what to do.  ``os.access`` is only a check: the daemons still
handle every later failure (a volume can fill up or be remounted after the start).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from ..errors import SpoolError, StateError

__all__ = ["check_directory", "check_places", "check_state_files"]


def _user() -> str:
    return f"uid {os.geteuid()}" if hasattr(os, "geteuid") else "this user"


def check_directory(
    path: str, what: str, *, create: bool = False, missing: str = "create it or pass --create"
) -> None:
    """``path`` is a directory this process may list and change; created if ``create``.

    ``what`` names it in messages (``spool``, ``--archive``); ``missing`` is the fix printed
    when it does not exist and may not be created.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not create:
            raise SpoolError(errno.ENOENT, f"{what} {path}: no such directory; {missing}",
                             path) from None  # fmt: skip
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise SpoolError(e.errno, f"cannot create {what} {path}: {e.strerror}; create it "
                             "yourself or choose another directory", path) from e  # fmt: skip
        return
    except OSError as e:
        raise SpoolError(e.errno, f"cannot look at {what} {path}: {e.strerror}; check the "
                         "permissions of the directories above it", path) from e  # fmt: skip
    if not stat.S_ISDIR(st.st_mode):
        raise SpoolError(errno.ENOTDIR, f"{what} {path} is a file, not a directory; give the "
                         "directory instead", path)  # fmt: skip
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise SpoolError(errno.EACCES, f"{what} {path} is not readable and writable by "
                         f"{_user()}; grant it (chmod, chown) or run as the user that owns it",
                         path)  # fmt: skip


def check_state_files(paths: Sequence[str], option: str = "--state") -> None:
    """The state's directory exists (it is created) and is writable; its files are files.

    ``paths`` are the state's files, the first one the snapshot or progress file that names
    the state in messages.
    """
    directory = os.path.dirname(os.path.abspath(paths[0]))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise StateError(e.errno, f"cannot create state directory {directory}: {e.strerror}; "
                         f"create it or point {option} elsewhere", directory) from e  # fmt: skip
    if not os.path.isdir(directory):
        raise StateError(errno.ENOTDIR, f"state directory {directory} is not a directory; "
                         f"point {option} elsewhere", directory)  # fmt: skip
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StateError(errno.EACCES, f"state directory {directory} is not writable by "
                         f"{_user()}; grant it or point {option} elsewhere",
                         directory)  # fmt: skip
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise StateError(e.errno, f"cannot look at state file {path}: {e.strerror}; "
                             f"fix it or point {option} elsewhere", path) from e  # fmt: skip
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise StateError(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
                             f"state file {path} is {kind}; move it aside or point {option} "
                             "elsewhere", path)  # fmt: skip
        if not os.access(path, os.R_OK | os.W_OK):
            raise StateError(errno.EACCES, f"state file {path} is not readable and writable "
                             f"by {_user()}; grant it or point {option} elsewhere",
                             path)  # fmt: skip


def check_places(
    spool: str,
    places: Sequence[tuple[str, str | None]],
    state_files: Sequence[str],
    *,
    create: bool = False,
    missing: str = "create it or pass --create",
) -> None:
    """Everything a spool consumer is given, checked before it starts, in the order of the CLI.

    The spool (created only if ``create``; ``missing`` is the fix printed otherwise), then each
    ``(option, directory)`` of ``places`` that exists already (``--archive``, ``--quarantine``:
    those that do not are created when first needed), then the state's files.
    """
    check_directory(spool, "spool", create=create, missing=missing)
    for option, path in places:
        if path is not None and os.path.lexists(path):
            check_directory(path, option)
    check_state_files(state_files)
