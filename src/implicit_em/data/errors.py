"""The one exception type of the data layer."""


class DataError(RuntimeError):
    """A data file is missing, malformed or fails its checksum; the message says how to fix it."""
