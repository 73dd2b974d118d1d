"""One exception type for every mistake a user can make; the CLI prints it as one line."""


class DrltuneError(Exception):
    """A user-facing error: bad input, missing data, unknown name. Never a bug."""
