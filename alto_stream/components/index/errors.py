"""Why an index is refused: under :class:`~alto_stream.errors.ConfigError`.

::

    ConfigError
    └── IndexRefusedError      the index cannot serve this request
        ├── ModelMismatchError the query embedder is not the model the index was built with
        └── StaleIndexError    the corpus changed since the build, or the files disagree
"""

from __future__ import annotations

from pathlib import Path

from alto_stream.errors import ConfigError

__all__ = ["IndexRefusedError", "ModelMismatchError", "StaleIndexError"]


class IndexRefusedError(ConfigError):
    """An index that cannot be used as asked; ``path`` is its directory."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class ModelMismatchError(IndexRefusedError):
    """Queries would be embedded by another model than the index's vectors were."""


class StaleIndexError(IndexRefusedError):
    """The index no longer matches its corpus (or its own files disagree): rebuild it."""
