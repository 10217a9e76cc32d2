"""The one exception type for bad user input.

Anything a user can fix (a config key, a file, a number out of range) raises
`UserError`; the CLI prints it as a single `error:` line and exits with code 2.
It subclasses `ValueError` so library users can catch it the usual way.
"""


class UserError(ValueError):
    """Bad input that the user can fix; the message says what and how."""
