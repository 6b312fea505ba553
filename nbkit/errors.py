"""Errors a user can cause: shown as a message that says what, where and how to fix, not a traceback."""


class UserError(ValueError):
    """Bad input from the user (data, reward, params, credentials); the message is the whole story."""
