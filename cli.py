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
