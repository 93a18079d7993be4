"""What a command is to the table in ``cli/__init__.py``, and the one way every command ends.

Every command is the same shape (arguments in, an exit code out), so ``run`` dispatches through
one table and :func:`invoke` handles the few ways a command ends (a message with a code, a value
the library refuses, an interrupt) once, each as one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TextIO

from ..errors import BiometricsError

__all__ = ["Command", "Handler", "fail", "invoke", "reason"]

Handler = Callable[[argparse.Namespace, TextIO, threading.Event], int]
"""``handler(args, out, stop) -> exit code``; ``stop`` ends a daemon as SIGTERM does."""


@dataclass(frozen=True, slots=True)
class Command:
    """One row of the command table: the subcommand's name, ``--help`` texts and code."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler
    description: str | None = None


class _Exit(Exception):  # noqa: N818 - not an error: an exit with a message
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def fail(code: int, message: str) -> NoReturn:
    """End the running command with ``biometrics <command>: <message>`` and exit ``code``.

    For the checks a handler makes itself (an option that would do nothing, a missing extra),
    wherever they are made, without threading a return code back up.
    """
    raise _Exit(code, message)


def invoke(command: Command, args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
    """Run ``command``'s handler; its exit code, or the code of the way it ended early."""
    try:
        return command.handler(args, out, stop)
    except _Exit as e:
        print(f"biometrics {command.name}: {e}", file=sys.stderr)
        return e.code
    except BiometricsError as e:  # an option value the library refuses, or a start-up check
        print(f"biometrics {command.name}: {reason(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: daemons have stopped cleanly; tools just stop
        print(f"biometrics {command.name}: interrupted", file=sys.stderr)
        return 130


def reason(e: BaseException) -> str:
    """An error's message without the ``[Errno N]`` prefix an ``OSError`` subclass adds."""
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)
