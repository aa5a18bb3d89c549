"""The one exception type that tools turn into a one-line message and exit code 2."""


class LearngeneError(Exception):
    """Bad input from the user: a wrong depth, a missing folder, a file of the wrong kind.

    The message names the problem and what to do about it, on one line.
    """
