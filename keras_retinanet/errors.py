"""How every ``retinanet-*`` command ends on an error: one line, never a traceback.

:func:`run_command` runs a command's ``main``. An error the user can act on (a missing or damaged
file, a bad value: ``OSError``, ``ValueError`` and the package's own subclasses of them) prints
``<command>: error: <message>`` on stderr and exits 1. Anything else is a bug: one line names it
and says how to get the traceback for a report. ``--debug`` on the command line, or
``RETINANET_DEBUG=1`` in the environment, lets every error through with its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

DEBUG_FLAG = "--debug"
DEBUG_ENV = "RETINANET_DEBUG"
DEBUG_HELP = "show the full traceback of an error (for a bug report); also RETINANET_DEBUG=1"


def debugging() -> bool:
    """Whether the user asked for tracebacks (``--debug`` or ``RETINANET_DEBUG``): a command's
    own ``except`` that prints a message re-raises instead."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_command(prog: str, main: Callable[[list[str]], Any], argv: Sequence[str] | None) -> Any:
    """Run ``main(argv)`` (``argv`` without ``--debug``; None: the command line) and turn an
    error that escapes it into one line on stderr and exit status 1 (130 for Ctrl-C)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in arguments or debugging()
    arguments = [a for a in arguments if a != DEBUG_FLAG]
    previous = os.environ.get(DEBUG_ENV)
    if debug:  # what the command does inside (its own error handling) sees it too
        os.environ[DEBUG_ENV] = "1"
    try:
        return _run(prog, main, arguments, debug)
    finally:  # a later command in the same process (a notebook) starts as it was
        if previous is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = previous


def _run(prog: str, main: Callable[[list[str]], Any], arguments: list[str], debug: bool) -> Any:
    try:
        return main(arguments)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except ImportError as error:  # an optional package this command needs is missing
        if debug:
            raise
        print(
            f"{prog}: error: {error}; this needs the optional package "
            f"{getattr(error, 'name', None) or 'named above'}: install it (pip install ...)",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    except (OSError, ValueError) as error:
        if debug:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as error:  # noqa: BLE001  (a bug: say so in one line, not a traceback)
        if debug:
            raise
        print(
            f"{prog}: error: {type(error).__name__}: {error}\n"
            f"{prog}: this is likely a bug; run the command again with {DEBUG_FLAG} (or "
            f"{DEBUG_ENV}=1) for the full traceback, and report it",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
