"""The data package's error type, in a leaf module every data module can import.

:class:`DataError` is raised for any problem with a dataset (a missing folder,
an unreadable file, ids out of range, files without a partner). It lives here,
with no imports, so that the palette, the decoders, the sources and the tfds
reader can all raise it without importing each other. It is re-exported as
``hdgan_jax.data.DataError`` and ``hdgan_jax.data.sources.DataError``.
"""


class DataError(ValueError):
  """A dataset problem; the message names the file(s) and how to fix it.

  ``kind`` sorts problems for the data check: 'unreadable', 'ids' (label ids,
  colours or instance ids out of range), 'size', 'unpaired', 'names' (two files
  of one role with the same scene name), 'lossy' (JPEG label/instance maps) or
  'setup'.
  """

  def __init__(self, message, kind='setup'):
    super().__init__(message)
    self.kind = kind
