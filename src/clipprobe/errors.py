"""The one exception type whose message reaches the user, as a single line, from every stage."""


class ClipprobeError(Exception):
    """Bad params or missing/corrupt input: the message names the key or file and what is allowed."""
