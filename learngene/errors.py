"""The one exception type that tools turn into a one-line message and exit code 2."""


class LearngeneError(Exception):
    """Bad input from the user: a wrong depth, a missing folder, a file of the wrong kind.

    The message names the problem and what to do about it, on one line.
    """


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (torch and timm errors run over many), or its type's name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
