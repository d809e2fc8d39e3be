"""An embedder that needs no API and no network: WordLlama, whose weights ship in its wheel.

For the demo, the tests and users without an embeddings API. ``wordllama`` (the ``local``
extra) bundles the l2_supercat model: a 32,000-token embedding table (256 dimensions) that
is averaged over a text's tokens. It is fast and small, and much weaker than a transformer
embedder: good enough to find a fact asked about in other words when they share content
words, not a substitute for a real model.

Offline by construction: the wheel lays its files out like WordLlama's own cache directory
(``weights/`` and ``tokenizers/``), but its loader looks for the bundled tokenizer in a
``tokenizer/`` folder that does not exist and then downloads it from Hugging Face. Passing the
package folder as ``cache_dir`` with ``disable_download=True`` makes the loader find both
files there and never reach its download code; nothing is written or fetched.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kern.errors import ConfigurationError, install_command

_CONFIG = "l2_supercat"
#: The dimensions the bundled weights can give: 256, or a Matryoshka prefix of it.
_DIMENSIONS = (64, 128, 256)
_WEIGHTS = f"weights/{_CONFIG}_256.safetensors"
_TOKENIZER = f"tokenizers/{_CONFIG}_tokenizer_config.json"


class LocalEmbedder:
    """Embeddings from the WordLlama model bundled in the ``wordllama`` wheel, offline.

    Vectors are L2-normalised (so cosine similarity is their dot product) and deterministic:
    the same text gives the same vector, alone or in any batch. A text with no tokens (``""``)
    has no direction and gets the zero vector, whose cosine with anything is 0.

    The model loads on the first ``embed`` (about 0.2 s after a one-off ~1 s import), once
    per instance, under a lock; ``wordllama`` is imported only then, so this module is light.
    ``dimensions`` may be 64 or 128 to keep a prefix of the 256 (the model was trained so).
    """

    def __init__(self, dimensions: int = 256, *, batch_size: int = 256) -> None:
        if dimensions not in _DIMENSIONS:
            raise ConfigurationError(
                f"LocalEmbedder dimensions must be one of {_DIMENSIONS}, not {dimensions!r}"
            )
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        #: Names model and dimension: a store that records it notices a changed embedder.
        self.id = f"wordllama:{_CONFIG}-{dimensions}"
        self.dimensions = dimensions
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text, in order (the zero vector for an empty text)."""
        texts = list(texts)
        filled = [i for i, text in enumerate(texts) if text]
        vectors = [[0.0] * self.dimensions for _ in texts]
        if filled:
            model = self._get_model()
            found = model.embed(
                [texts[i] for i in filled], norm=True, return_np=False, batch_size=self.batch_size
            )
            for i, vector in zip(filled, found, strict=True):
                vectors[i] = vector
        return vectors

    def _get_model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _load(self.dimensions)
        return self._model

    def __repr__(self) -> str:
        return f"LocalEmbedder(id={self.id!r})"


def _load(dimensions: int) -> Any:
    """The bundled model, loaded from the package folder with downloads disabled."""
    wordllama = _import_wordllama()
    folder = Path(wordllama.__file__).parent
    missing = [name for name in (_WEIGHTS, _TOKENIZER) if not (folder / name).is_file()]
    if missing:
        # Checked here so that wordllama never falls back to fetching the tokenizer.
        raise ConfigurationError(
            f"the installed wordllama {getattr(wordllama, '__version__', '?')} does not ship "
            f"{', '.join(missing)} in {folder}; kern's LocalEmbedder needs a wordllama that "
            f"bundles the {_CONFIG} model: {install_command('local')}"
        )
    trunc_dim = None if dimensions == 256 else dimensions
    return wordllama.WordLlama.load(
        _CONFIG, cache_dir=folder, dim=256, trunc_dim=trunc_dim, disable_download=True
    )


def _import_wordllama() -> Any:
    """``import wordllama``, without the root logging set-up it does as a side effect.

    wordllama calls ``logging.basicConfig(level=INFO)`` on import, which would give an
    application that never configured logging a stderr handler and INFO level.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return importlib.import_module("wordllama")
    except ImportError as exc:
        raise ConfigurationError(
            f"LocalEmbedder needs the wordllama package ({exc}): {install_command('local')}"
        ) from exc
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


__all__ = ["LocalEmbedder"]
