"""The base of every error spendtrail reports to a user as one clear line."""


class SpendtrailError(ValueError):
    """Bad input or an unusable resource; the message names the file, line or field."""
