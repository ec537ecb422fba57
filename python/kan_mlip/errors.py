"""Errors that the command-line tools report as a one-line message instead of a traceback."""


class TrainingFailed(RuntimeError):
    """nequip-train exited with an error; the message carries the command and the end of its log."""
