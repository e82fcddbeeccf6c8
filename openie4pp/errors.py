"""One error contract for the whole house: user mistakes are :class:`OpenIE4ppError`\\ s.

Why a family and not ``ValueError``: a ``ValueError`` may equally be a bug deep in a library,
and the command line must tell the two apart. An :class:`OpenIE4ppError` is a message written
for the user (it names the file, line, field or option at fault and, where it can, the command
that fixes it); the CLI prints it as one line, ``openie4pp CMD: error: ...``, and exits with the
error's :attr:`~OpenIE4ppError.exit_code`. ``--debug`` shows the traceback instead.

Exit codes (the README's table):

======  ==========================================================================================
``0``   success
``1``   the command ran and found problems: nothing accepted, invalid data, unmatched predictions,
        a run stopped because every endpoint failed (a plain rerun continues it)
``2``   usage or configuration error, found before any work was done
``3``   ``annotate --execution batch-files``: the round's batch files are written and wait for their
        outputs (made elsewhere, e.g. ``vllm run-batch``); the same command, rerun, goes on
``130`` interrupted (Ctrl-C or SIGTERM); what was finished is kept and a rerun continues
======  ==========================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_WAITING = 3
EXIT_INTERRUPTED = 130


class OpenIE4ppError(Exception):
    """A user-facing error: its message is the one line the CLI prints."""

    exit_code = EXIT_USAGE


class UsageError(OpenIE4ppError, ValueError):
    """A wrong option, path or configuration value, found before the first request or step.

    Also a ``ValueError`` so that library callers that catch ``ValueError`` for bad arguments keep
    working."""

    exit_code = EXIT_USAGE


class ModelIntegrityError(OpenIE4ppError):
    """A model file made from packaged parts (an embedded GGUF, a converted encoder) is not the pinned
    official release: a tampered, truncated or other-version input is refused, never loaded."""

    exit_code = EXIT_USAGE


class InputFileError(OpenIE4ppError, ValueError):
    """An input file that cannot be used at all (not a bad line: bad lines become rejections)."""

    exit_code = EXIT_USAGE


class RunProblems(OpenIE4ppError):
    """The command ran to its end (or to a safe stop) and its result is not a success."""

    exit_code = EXIT_PROBLEMS


class EndpointsDown(RunProblems):
    """The circuit breaker opened: every endpoint kept failing. Finished items stay finished; the
    rest stay unfinished, so rerunning the same command continues the run."""
