"""Errors a user can cause: shown as a message that says what, where and how to fix, not a traceback."""


class UserError(ValueError):
    """Bad input from the user (data, reward, params, credentials); the message is the whole story."""


class WaitTimeout(UserError):
    """A wait for work that goes on elsewhere (a training job) ran out; the work itself goes on.

    The pipeline runner records the notebook that raised it as `timeout`, never `ok`.
    """
