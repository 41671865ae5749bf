"""The one exception type for user errors (bad file, unknown name, bad option).

The CLI prints its message as one line and exits with code 2; bugs keep their traceback.
"""


class UserError(Exception):
    """A problem with the user's input; the message names the problem and the fix."""
