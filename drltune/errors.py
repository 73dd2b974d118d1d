"""One exception type for every mistake a user can make; the CLI prints it as one line."""


class DrltuneError(Exception):
    """A user-facing error: bad input, missing data, unknown name. Never a bug."""

    exit_code = 2  # a usage error (click's convention)


class RuntimeFailure(DrltuneError):
    """Valid input that failed while running: a database down, a training that diverged, a halted
    search."""

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """An exception as one line for an `error:` message (its type's name when it says nothing):
    database drivers and parsers put pages of context after the first line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def typed_line(exc: BaseException) -> str:
    """ "Type: first line" for a reason shown beside a file's name (a bare type when it says
    nothing): a decoder's or loader's type name tells more than its message alone."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
