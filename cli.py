"""What the three commands (main.py, predict, stream) share on the command line."""
from __future__ import annotations

import argparse
import sys

from data_loader import DataError
from outputs import discard


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each option's default, but not 'None': the help then says what happens without it."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


class InputError(DataError):
    """Input the user can fix; the message names the problem and the fix."""


def warn(msg: str) -> None:
    try:
        print(f"warning: {msg}", file=sys.stderr)
    except BrokenPipeError:  # stderr's reader has gone (`2>&1 | head`): the work goes on, unwarned
        discard(sys.stderr)


def run_command(body, os_error, errors: tuple = (DataError,), broken_pipe: int = 1, cleanup=None) -> int:
    """Run a command's work, body(), and return its exit code; every command ends here. 0 when it finishes;
    2 with one line 'error: ...' on standard error for an error the user can fix (`errors`) or an OSError that
    os_error(exc) names (it returns the message, or None for an OSError that is a bug: raised); 130 after Ctrl-C;
    `broken_pipe` when standard output's reader has gone (`| head`), quietly. cleanup(exc), if given, runs first
    on any failure (what a failed command takes away again). Anything else is raised."""
    try:
        body()
    except BaseException as exc:
        if cleanup is not None:
            cleanup(exc)
        if isinstance(exc, errors):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, BrokenPipeError):
            discard(sys.stdout)
            return broken_pipe
        if isinstance(exc, OSError):
            message = os_error(exc)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            return 2
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C: outputs are written whole or not at all (outputs.py)
            print("interrupted", file=sys.stderr)
            return 130
        raise
    return 0
