"""The one exception type for user mistakes and bad input."""


class DopeError(Exception):
    """A bad input or option. The message names the file or option and what is wrong; the CLI
    prints it as a single line without a traceback. Library code raises it, never calls exit()."""
