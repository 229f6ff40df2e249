"""The one error type for bad input: a config, a data file, a workdir.

Raise ``InputError`` (a ``ValueError``) when what the user gave is wrong,
with a message that names the problem and the field or file. The launchers
print such errors as one line (``<launcher>: error: <message>``) and exit
with status 2, instead of a traceback; every other exception is a bug and
keeps its traceback.
"""


class InputError(ValueError):
  """Bad user input; the message names the field or the file."""


class EmptyLeakError(InputError):
  """The client's message carries no information (all zero or non-finite)."""
