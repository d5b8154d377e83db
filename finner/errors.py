"""The one exception type a job reports as a single line (bad input, unreachable server...)."""


class FinnerError(Exception):
    """An error the user can act on; jobs print `error: <message>` and exit non-zero."""
