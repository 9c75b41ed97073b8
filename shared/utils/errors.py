"""Errors that name the input at fault, and a last line that states the cause of a failed run.

A bundle run that fails deep in a data pipeline or a training loop ends, in MONAI, with a ``RuntimeError: Failed to
evaluate ConfigExpression ...`` after hundreds of lines of chained tracebacks. :func:`install_excepthook` (installed
when the package is imported) keeps that traceback and adds, as the very last line, the cause: the first
:class:`InputError` in the chain (which names the file and the problem), else the innermost exception.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Sequence
from types import TracebackType

__all__ = ["InputError", "describe_source", "exception_chain", "root_cause", "cause_line", "install_excepthook"]


class InputError(ValueError):
    """An input (a file, or the files of one case) that cannot be used, and why.

    Args:
        source: the file path(s) of the input.
        problem: what is wrong with it, in words.
    """

    def __init__(self, source: str | Sequence[str], problem: str) -> None:
        self.source = describe_source(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


def describe_source(source: object) -> str:
    """A file path, or several joined by commas (the contrasts of one BraTS case)."""
    if isinstance(source, (list, tuple)):
        return ", ".join(str(s) for s in source)
    return str(source)


def exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or during, outermost first."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        chain.append(error)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return chain


def root_cause(error: BaseException) -> BaseException:
    """The first :class:`InputError` of the chain, else its innermost exception."""
    chain = exception_chain(error)
    return next((e for e in chain if isinstance(e, InputError)), chain[-1])


def cause_line(error: BaseException, max_lines: int = 25) -> str:
    """What to print last when a run failed: the root cause's type and message (at most ``max_lines`` lines)."""
    cause = root_cause(error)
    lines = str(cause).strip().splitlines() or ["(no message)"]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    return f"error: {type(cause).__name__}: " + "\n".join(lines)


def _excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    _previous_hook(kind, error, tb)
    if isinstance(error, KeyboardInterrupt):
        return
    print(f"\n{cause_line(error)}", file=sys.stderr)
    # Exit now, the cause being the last line: tearing the interpreter down after a failure in a data-loading thread
    # can make the C++ runtime print "terminate called without an active exception" after it. The exit handlers
    # (e.g. the release of a bundle lock) still run.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


_previous_hook = sys.excepthook


def install_excepthook() -> None:
    """Make an uncaught exception end with :func:`cause_line` (once per process)."""
    if sys.excepthook is not _excepthook:
        global _previous_hook
        _previous_hook = sys.excepthook
        sys.excepthook = _excepthook
