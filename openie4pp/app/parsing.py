"""The argument parser every ``openie4pp`` command line is read with: defaults in ``--help``, and a
refused command line raised as :class:`ArgumentError` (the CLI prints it as one line, exit 2)
instead of argparse's usage text and exit.

Apart from :mod:`openie4pp.app.cli`, so that the quickstart can parse each step's command line
exactly as the CLI would without importing the CLI (which imports the quickstart's command).
"""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any, NoReturn


class ArgumentError(Exception):
    """A command line argparse refused."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.message = prog, message


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the uninformative ``None`` and ``False``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, [], argparse.SUPPRESS) or not action.help:
            return action.help or ""
        return super()._get_help_string(action) or ""


class Parser(argparse.ArgumentParser):
    """Defaults in ``--help``; a refused command line is an :class:`ArgumentError`, not usage + exit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise ArgumentError(self.prog, message)


def command_parser(name: str, command: ModuleType) -> Parser:
    """The parser of ``openie4pp NAME`` alone, from its command module's ``add_arguments``."""
    parser = Parser(prog=f"openie4pp {name}")
    command.add_arguments(parser)
    return parser
