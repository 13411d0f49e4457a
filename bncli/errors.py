"""The two kinds of failure a user sees; the CLI turns them into a message and an exit code in one place."""


class BncliError(Exception):
    """A runtime failure: the message is shown without a traceback, exit code 1."""

    exit_code = 1


class UsageError(BncliError):
    """Bad command line or configuration (file, line, key, what was expected): exit code 2."""

    exit_code = 2
