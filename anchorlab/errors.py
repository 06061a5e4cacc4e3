"""Errors a user can act on: the CLI prints their message as one line, without a traceback."""


class UserError(ValueError):
    """Bad input (recipe, data, model folder); the message names what is wrong and where."""
