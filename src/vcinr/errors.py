"""Errors that the CLI turns into a one-line message and a non-zero exit.

Anything raised as a :class:`VcinrError` is the user's problem (bad file, bad config, a
bitstream for another model) and is reported without a traceback; anything else is a bug.
"""


def shown(value: object) -> str:
    """``repr(value)`` cut to 40 characters: a hostile file's value must not make a message many lines long."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class VcinrError(Exception):
    """Base class of every error that is reported to the user as one line."""


class InputError(VcinrError):
    """An input file or array that cannot be used (missing, corrupt, NaN, wrong modality)."""


class ConfigError(VcinrError):
    """A configuration that names an unknown key or holds an out-of-range value."""


class ModelError(VcinrError):
    """A model directory that is missing, incomplete, tampered with or of another version."""


class BitstreamError(VcinrError):
    """A ``.vci`` bitstream that is corrupt, truncated or made for another model."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C honoured after saving what is needed to resume; the CLI prints it and exits 130."""
