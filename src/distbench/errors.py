"""Error types that separate a user's mistake from a bug.

A ``UserError`` is caught by the CLI and printed as one line on stderr with exit code 2;
anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: an unknown name, a missing file, an impossible setting."""


class RunFailed(Exception):
    """A benchmark run started but did not finish (a rank died, a timeout)."""
