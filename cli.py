"""What the three commands (main.py, predict, stream) share on the command line."""
from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each option's default, but not 'None': the help then says what happens without it."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)
