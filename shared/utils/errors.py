"""Errors that name the input at fault, and a last line that states the cause of a failed run.

A bundle run that fails deep in a data pipeline or a training loop ends, in MONAI, with a ``RuntimeError: Failed to
evaluate ConfigExpression ...`` after hundreds of lines of chained tracebacks. In a ``python -m monai.bundle run``
process (and only there: importing the package changes nothing in MONAI Label or a notebook),
:func:`install_excepthook` keeps that traceback and adds, as the very last line, the cause (:func:`root_cause`): the
first :class:`InputError`, else the outermost exception raised by this package's code (its message names the file
and the problem), else the innermost exception.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from types import TracebackType

__all__ = [
    "InputError",
    "describe_source",
    "exception_chain",
    "raised_here",
    "root_cause",
    "cause_line",
    "is_bundle_run",
    "at_failed_exit",
    "install_excepthook",
]

_PACKAGE = __name__.split(".")[0]  # "shared" in the repository, "scripts" inside a bundle


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
    """``error`` and the exceptions it was raised from or during, outermost first, as Python prints them: the
    context of an exception raised ``from None`` is not part of it."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        chain.append(error)
        seen.add(id(error))
        error = error.__cause__ if error.__cause__ is not None or error.__suppress_context__ else error.__context__
    return chain


def raised_here(error: BaseException) -> bool:
    """Whether ``error`` was raised by this package's code (the innermost frame of its traceback is in it)."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0] == _PACKAGE


def root_cause(error: BaseException) -> BaseException:
    """The first :class:`InputError` of the chain, else its outermost exception raised by this package (its message
    names the file and the problem), else its innermost exception."""
    chain = exception_chain(error)
    return next((e for e in chain if isinstance(e, InputError)), None) or next(
        (e for e in chain if raised_here(e)), chain[-1])


def cause_line(error: BaseException, max_lines: int = 25) -> str:
    """What to print last when a run failed: the root cause's type and message (at most ``max_lines`` lines)."""
    cause = root_cause(error)
    lines = str(cause).strip().splitlines() or ["(no message)"]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    return f"error: {type(cause).__name__}: " + "\n".join(lines)


_CLEANUPS: list[Callable[[], object]] = []


def at_failed_exit(cleanup: Callable[[], object]) -> None:
    """Run ``cleanup`` when a bundle run ends with an uncaught exception (e.g. release a lock); register it with
    ``atexit`` too for the other ways a process ends."""
    _CLEANUPS.append(cleanup)


def _excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    _previous_hook(kind, error, tb)
    if isinstance(error, KeyboardInterrupt):
        return
    print(f"\n{cause_line(error)}", file=sys.stderr, flush=True)
    # End the bundle run now, the cause being its last line: tearing the interpreter down after a failure in a data
    # pipeline can make the C++ runtime print "terminate called without an active exception" after it. Only the
    # cleanups of at_failed_exit run; the hook is installed in bundle runs only (see install_excepthook).
    for cleanup in reversed(_CLEANUPS):
        try:
            cleanup()
        except Exception as e:  # a failing cleanup must not hide the cause
            print(f"cleanup {cleanup} failed: {e}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


_previous_hook = sys.excepthook


def is_bundle_run(argv: Sequence[str] | None = None) -> bool:
    """Whether this process is ``python -m monai.bundle run ...`` (directly or as a ``torchrun`` worker)."""
    argv = sys.argv if argv is None else argv
    main = os.path.join("monai", "bundle", "__main__.py")
    return len(argv) > 1 and os.path.normpath(str(argv[0])).endswith(main) and argv[1] == "run"


def install_excepthook() -> None:
    """Make an uncaught exception end with :func:`cause_line` (once per process). The package calls it on import
    only in a bundle run (:func:`is_bundle_run`): the process is then the bundle's."""
    if sys.excepthook is not _excepthook:
        global _previous_hook
        _previous_hook = sys.excepthook
        sys.excepthook = _excepthook
