"""`TextEncoder`: texts in, all-MiniLM-L6-v2 sentence embeddings out, in JAX.

    encoder = td.TextEncoder()                 # finds the weights (see weights.py), warms
    vectors = encoder.encode(["hello", ""])   # (2, 384) float32, unit rows
    vectors, tokens = encoder.encode_counted(texts)   # and the tokens each text used
    encoder.stats.cache_hits, encoder.stats.cache_misses

Texts are tokenized, sorted by length and cut into chunks of at most the largest batch
bucket; each chunk is padded to a (batch, sequence) bucket, so a handful of compiled
shapes serve all traffic (the common ones are compiled at load). Embeddings are kept in
a bounded LRU keyed by a hash of the text, so a conversation that resends its history
encodes only its new messages.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tinydancer.errors import ConfigError, InvalidRequestError
from tinydancer.text.bert import HIDDEN

__all__ = [
    "EncoderStats",
    "LazyEncoder",
    "TextEncoder",
    "TextEncoderConfig",
    "default_encoder",
]


class TextEncoderConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    directory: Path | None = Field(
        None, description="model.safetensors + tokenizer.json; None = look in the usual places"
    )
    max_tokens: int = Field(
        256,
        ge=2,
        le=512,
        description="truncation, [CLS] and [SEP] included (sentence-transformers: 256)",
    )
    batch_buckets: tuple[int, ...] = Field(
        (1, 2, 4, 8, 16, 32), description="compiled batch sizes (larger inputs are chunked)"
    )
    seq_buckets: tuple[int, ...] = Field(
        (16, 32, 48, 64, 96, 128, 192, 256),
        description="compiled sequence lengths (the last >= max_tokens)",
    )
    warm_shapes: tuple[tuple[int, int], ...] = Field(
        ((1, 16), (1, 32), (1, 64), (1, 96), (1, 128), (8, 96), (8, 128)),
        description="(batch, sequence) buckets compiled at load",
    )
    cache_size: int = Field(10_000, ge=0, description="texts kept in the embedding LRU (0 = off)")
    persistent_cache: bool = Field(
        True, description="JAX's compilation cache in the user's cache dir (a fast second start)"
    )
    sync_dispatch: bool = Field(True, description="turn off JAX's async dispatch")

    @model_validator(mode="after")
    def _check(self) -> TextEncoderConfig:
        for name in ("batch_buckets", "seq_buckets"):
            values = getattr(self, name)
            if not values or list(values) != sorted(set(values)) or values[0] < 1:
                raise ConfigError(f"{name}: got {values}; expected strictly increasing sizes >= 1")
        if self.seq_buckets[-1] < self.max_tokens:
            raise ConfigError(
                f"seq_buckets: the largest ({self.seq_buckets[-1]}) must be >= max_tokens ({self.max_tokens})"
            )
        return self


@dataclass
class EncoderStats:
    texts: int = 0  # texts asked for
    cache_hits: int = 0
    cache_misses: int = 0  # texts run through the model
    batches: int = 0  # jitted calls
    padded_tokens: int = 0  # positions computed (batch x sequence buckets)
    real_tokens: int = 0  # of which real tokens


def _key(text: str, index: int) -> bytes:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(
            f"texts[{index}]", text, "valid Unicode text", "it contains a lone surrogate"
        ) from None
    return hashlib.blake2b(raw, digest_size=16).digest()


class TextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings, identical (cosine >= 0.9999) to
    sentence-transformers'. Thread-safe; raises `EncoderNotFoundError` (a
    `ModelFileError`) naming where it looked when there are no weights."""

    def __init__(
        self,
        config: TextEncoderConfig | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        import jax

        from tinydancer.runtime import use_compilation_cache, use_sync_dispatch
        from tinydancer.text.bert import bert_params, encode_tokens
        from tinydancer.text.tokens import Tokenizer
        from tinydancer.text.weights import find_encoder_dir, load_encoder_tensors

        self.config = config or TextEncoderConfig()
        env = os.environ if environ is None else environ
        self.directory = self.config.directory or find_encoder_dir(env)
        if self.config.sync_dispatch:
            use_sync_dispatch()
        if self.config.persistent_cache:
            use_compilation_cache(env)
        self.tokenizer = Tokenizer(Path(self.directory) / "tokenizer.json", self.config.max_tokens)
        self.params_numpy = bert_params(load_encoder_tensors(self.directory))
        self._params = jax.device_put(self.params_numpy)
        self._run = jax.jit(encode_tokens)
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, tuple[np.ndarray, int]] = OrderedDict()
        self.stats = EncoderStats()
        for batch, seq in self.config.warm_shapes:
            self._call(np.zeros((batch, seq), np.int32), np.ones((batch, seq), np.int32))

    def _call(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(self._params, ids, mask))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) float32 unit rows, one per text (the empty string included)."""
        return self.encode_counted(texts)[0]

    def encode_counted(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The embeddings and (N,) int32 tokens each text used (after truncation)."""
        if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
            raise InvalidRequestError(
                "texts", texts, "a list of strings", "wrap a single text in a list"
            )
        keys = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidRequestError(f"texts[{i}]", text, "a string")
            keys.append(_key(text, i))
        out = np.empty((len(texts), HIDDEN), np.float32)
        counts = np.empty(len(texts), np.int32)
        todo: dict[bytes, list[int]] = {}
        with self._lock:
            self.stats.texts += len(texts)
            for i, key in enumerate(keys):
                hit = self._cache.get(key) if self.config.cache_size else None
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i], counts[i] = hit
                    self.stats.cache_hits += 1
                else:
                    todo.setdefault(key, []).append(i)
            self.stats.cache_misses += sum(len(v) for v in todo.values())
        if todo:
            firsts = [positions[0] for positions in todo.values()]
            vectors, lengths = self._encode_new([texts[i] for i in firsts])
            with self._lock:
                for (key, positions), vector, length in zip(
                    todo.items(), vectors, lengths, strict=True
                ):
                    out[positions], counts[positions] = vector, length
                    if self.config.cache_size:
                        self._cache[key] = (vector.copy(), int(length))
                while len(self._cache) > self.config.cache_size:
                    self._cache.popitem(last=False)
        return out, counts

    def plan(self, lengths: np.ndarray) -> list[tuple[np.ndarray, int, int]]:
        """How texts of these token lengths are computed: (rows, batch bucket, sequence
        bucket) per jitted call. Texts are sorted by length and grouped by sequence bucket
        (so a long text does not pad the short ones), at most the largest batch bucket a call."""
        from tinydancer.text.tokens import bucket_for

        order = np.argsort(lengths, kind="stable")
        seqs = np.array([bucket_for(int(n), self.config.seq_buckets) for n in lengths[order]])
        step = self.config.batch_buckets[-1]
        out = []
        for seq in np.unique(seqs):
            group = order[seqs == seq]
            for start in range(0, len(group), step):
                chunk = group[start : start + step]
                out.append((chunk, bucket_for(len(chunk), self.config.batch_buckets), int(seq)))
        return out

    def _encode_new(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        from tinydancer.text.tokens import pad_batch

        rows = self.tokenizer.ids(texts)
        lengths = np.array([len(r) for r in rows], np.int32)
        out = np.empty((len(texts), HIDDEN), np.float32)
        for chunk, batch, seq in self.plan(lengths):
            ids, mask = pad_batch([rows[i] for i in chunk], batch, seq)
            out[chunk] = self._call(ids, mask)[: len(chunk)]
            with self._lock:
                self.stats.batches += 1
                self.stats.padded_tokens += batch * seq
                self.stats.real_tokens += int(lengths[chunk].sum())
        return out, lengths

    def reference(self, texts: Sequence[str], dtype: Any = np.float32) -> np.ndarray:
        """The same embeddings from the plain-numpy reference (slow; the parity oracle)."""
        from tinydancer.text.reference import reference_encode
        from tinydancer.text.tokens import pad_batch

        rows = self.tokenizer.ids(list(texts))
        ids, mask = pad_batch(rows, len(rows), max(len(r) for r in rows))
        return reference_encode(self.params_numpy, ids, mask, dtype)

    def cache_info(self) -> dict[str, int]:
        with self._lock:
            return {
                "size": len(self._cache),
                "max_size": self.config.cache_size,
                "hits": self.stats.cache_hits,
                "misses": self.stats.cache_misses,
            }


_default: TextEncoder | None = None
_default_lock = threading.Lock()


def default_encoder() -> TextEncoder:
    """The process's shared default encoder, loaded on first call (an error is not kept:
    installing the weights and calling again works)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = TextEncoder()
        return _default


class LazyEncoder:
    """A `TextEncoder` loaded on the first text to encode (so a router that only sees
    embeddings never loads it; without weights, only text requests fail, with the
    install line, and the next one tries again). `config` None: the process's shared
    default encoder."""

    def __init__(self, config: TextEncoderConfig | None = None) -> None:
        self.config = config
        self.loaded: TextEncoder | None = None
        self.unavailable = False  # the last preload found no usable weights
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """One of ready, loading (not loaded yet) or unavailable (the last preload failed)."""
        if self.loaded is not None:
            return "ready"
        return "unavailable" if self.unavailable else "loading"

    def load(self) -> TextEncoder:
        with self._lock:
            if self.loaded is None:
                self.loaded = default_encoder() if self.config is None else TextEncoder(self.config)
            return self.loaded

    def preload(self) -> bool:
        """Load now if the weights are usable (e.g. in a background thread at start); if
        not, say nothing: the text requests that need them get the error."""
        from tinydancer.errors import TinyDancerError

        try:
            self.load()
        except TinyDancerError:
            self.unavailable = True
            return False
        self.unavailable = False
        return True

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return (self.loaded or self.load()).encode(texts)

    def encode_counted(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return (self.loaded or self.load()).encode_counted(texts)
