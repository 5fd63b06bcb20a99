"""Candidate-mode router: one jitted call scores, bounds and ranks every candidate.

    router = Router()                          # the shipped model
    response = router.route(RoutingRequest(query_embedding=q, candidates=batch))
    response.candidate_ids[:3], response.use_lightweight[:3]

The host side: input checks, staging into the bucket's aligned buffers (or, for route()
calls up to `HOST_REDUCE_ROWS`, the two embedding reductions done by numpy), ranking,
and turning the kernel's per-row problem bits (`candidates.kernel`) into errors that
name the candidate and the field (`candidates.problems`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from tinydancer._ids import new_request_id
from tinydancer.candidates import features as feats
from tinydancer.candidates.config import RouterConfig
from tinydancer.candidates.features import FeatureConfig
from tinydancer.candidates.kernel import (
    ROW_CONF,
    ROW_HEURISTIC,
    ROW_LIGHT,
    ROW_PROBLEM,
    ROW_UNC,
    LoadedModel,
    pack_model,
)
from tinydancer.candidates.problems import raise_problem
from tinydancer.candidates.text import with_text_embeddings
from tinydancer.candidates.types import BatchScores, CandidateBatch, RoutingRequest, RoutingResponse
from tinydancer.errors import EmbeddingError, InvalidRequestError, ModelFileError
from tinydancer.model.conformal import uncertainty_table
from tinydancer.model.embedding import (
    as_embedding,
    as_embedding_matrix,
)
from tinydancer.model.staging import (
    BATCH_CHUNK,
    BUCKETS,
    MAX_BUCKET,
    StagingBuffers,
    bucket_for,
    is_aligned,
)
from tinydancer.model.weights import RouterModel, serving_model
from tinydancer.runtime import use_sync_dispatch
from tinydancer.text.encoder import LazyEncoder

__all__ = ["HOST_REDUCE_ROWS", "Router", "RouterStats"]

# route() calls up to this many rows compute E q and the row norms with numpy and send
# only (6, N) rows into the jitted call (`score_reduced_kernel`); larger calls and
# score_batch send the embeddings (`score_kernel`, which XLA may spread over cores).
HOST_REDUCE_ROWS = 1024


@dataclass
class RouterStats:
    routed_requests: int = 0
    scored_candidates: int = 0
    fallback_requests: int = 0


class Router:
    """Scores candidates for a query with an INT8 FastGRNN and conformal uncertainty."""

    def __init__(
        self,
        config: RouterConfig | None = None,
        *,
        model: RouterModel | None = None,
        clock: Any = time.time,
        encoder: Any = None,  # query_text / candidate text; default: the shared one, lazily
    ) -> None:
        self.config = config or RouterConfig()
        self.encoder = encoder if encoder is not None else LazyEncoder()
        self._clock = clock
        if self.config.sync_dispatch:
            use_sync_dispatch()
        self._lock = threading.Lock()
        self.stats = RouterStats()
        loaded = self._prepare(
            serving_model(model if model is not None else self.config.model_path, "candidate")
        )
        dim = loaded.dim
        self._staging = StagingBuffers(
            {
                "embeddings": lambda bucket: (bucket, dim),
                "aux": lambda bucket: (4 * bucket + dim + 1,),
                "reduced": lambda bucket: (6 * bucket + 2,),
            }
        )
        self._loaded = loaded

    # -- model management ---------------------------------------------------------------
    def _prepare(self, model: RouterModel) -> LoadedModel:
        """Move a model's weights to the device and compile + run every warm bucket."""
        feature_config = self.config.features or FeatureConfig.from_schema(
            model.feature_schema["features"]
        )
        settings = np.array(
            [
                *feature_config.constants(),
                self.config.confidence_threshold,
                self.config.max_uncertainty,
                self.config.max_future_skew_s,
            ],
            np.float32,
        )
        packed, layout = pack_model(
            model.float_params(), uncertainty_table(model.calibration), settings
        )
        loaded = LoadedModel(
            model=model, packed=jnp.asarray(packed), layout=layout, dim=model.embedding.dim
        )
        _warm(loaded, self.config.warm_up_to_candidates)
        return loaded

    def warm(self, up_to_candidates: int | None = None) -> None:
        """Compile and run every shape bucket up to `up_to_candidates` (default: the
        config's `warm_up_to_candidates`) for the serving model, so no call of that size
        waits for a compile. Safe beside routing calls; a server may call it in the
        background after starting with a small `warm_up_to_candidates`."""
        limit = self.config.warm_up_to_candidates if up_to_candidates is None else up_to_candidates
        _warm(self._loaded, limit)

    def reload(self, source: str | Path | RouterModel) -> str:
        """Swap in new weights (validated and warmed first); returns the new model version.

        Requests in flight finish on the old weights; a bad file raises and changes nothing.
        The new model must read embeddings of the same dimension.
        """
        model = serving_model(source, "candidate")
        if model.embedding.dim != self._loaded.dim:
            raise ModelFileError(
                model.version,
                "embedding dimension differs from the serving model",
                expected=str(self._loaded.dim),
                found=str(model.embedding.dim),
            )
        loaded = self._prepare(model)
        with self._lock:
            self._loaded = loaded
        return model.version

    @property
    def model(self) -> RouterModel:
        return self._loaded.model

    @property
    def model_version(self) -> str:
        return self._loaded.model.version

    # -- input preparation ----------------------------------------------------------------
    def _batch(
        self, request: RoutingRequest, dim: int
    ) -> tuple[np.ndarray, CandidateBatch, np.ndarray]:
        """(query, batch, embeddings) with shapes and dtypes checked; values are checked in the kernel."""
        if (
            request.embedding_model is not None
            and request.embedding_model != self._loaded.model.embedding.model
        ):
            raise EmbeddingError(
                "embedding_model",
                request.embedding_model,
                repr(self._loaded.model.embedding.model),
                "the model was trained on other embeddings",
            )
        query = request.query_embedding
        if not (
            isinstance(query, np.ndarray) and query.dtype == np.float32 and query.shape == (dim,)
        ):
            query = as_embedding(query, "query_embedding", dim)
        candidates = request.candidates
        if isinstance(candidates, CandidateBatch):
            batch = candidates
        else:
            batch = CandidateBatch.from_candidates(candidates, request.metadata)
        embeddings = batch.embeddings
        if not (
            isinstance(embeddings, np.ndarray)
            and embeddings.dtype == np.float32
            and embeddings.ndim == 2
            and embeddings.shape[1] == dim
            and embeddings.flags.c_contiguous
        ):
            embeddings = as_embedding_matrix(embeddings, "candidates.embedding", dim)
        if embeddings.shape[0] == 0:
            raise InvalidRequestError("candidates", "an empty list", "at least one candidate")
        batch.check_lengths(embeddings.shape[0])
        return query, batch, embeddings

    def _check_ids(self, ids: np.ndarray, n: int) -> None:
        if ids.shape != (n,):
            raise InvalidRequestError(
                "candidates.id", f"{ids.size} ids", f"{n} ids, one per embedding"
            )
        if self.config.check_duplicate_ids and len(set(ids.tolist())) != n:
            values, counts = np.unique(ids, return_counts=True)
            raise InvalidRequestError(
                "candidates.id", values[counts > 1][0], "unique candidate ids", "duplicate id"
            )

    def _stage(
        self,
        batch: CandidateBatch,
        embeddings: np.ndarray,
        query: np.ndarray,
        tags: int | None,
        start: int,
        stop: int,
        now: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Copy rows start:stop into the bucket's staging buffers (call under the lock).

        Returns (embeddings, aux) as the kernel reads them. Embedding rows that already
        fill a bucket and are 64-byte aligned are passed as they are (no copy).
        """
        n = stop - start
        bucket = bucket_for(n)
        aux = self._staging.get("aux", bucket)
        self._fill_columns(
            aux[: 4 * bucket].reshape(4, bucket), batch, tags, slice(start, stop), now
        )
        aux[4 * bucket : -1] = query
        aux[-1] = n
        chunk = embeddings[start:stop]
        if n == bucket and is_aligned(chunk):
            return chunk, aux
        staged = self._staging.get("embeddings", bucket)
        staged[:n] = chunk
        return staged, aux

    def _reduce(
        self,
        batch: CandidateBatch,
        embeddings: np.ndarray,
        query: np.ndarray,
        tags: int | None,
        now: float,
    ) -> np.ndarray:
        """The small-call input of `score_reduced_kernel` (call under the lock): E q and
        the row norms squared by numpy, the columns, q . q and the row count."""
        n = embeddings.shape[0]
        bucket = bucket_for(n)
        aux = self._staging.get("reduced", bucket)
        with np.errstate(all="ignore"):  # inf / NaN inputs are reported by the kernel
            np.matmul(embeddings, query, out=aux[:n])
            np.vecdot(embeddings, embeddings, out=aux[bucket : bucket + n])
            aux[-2] = query @ query
        self._fill_columns(
            aux[2 * bucket : 6 * bucket].reshape(4, bucket), batch, tags, slice(0, n), now
        )
        aux[-1] = n
        return aux

    def _fill_columns(
        self, target: np.ndarray, batch: CandidateBatch, tags: int | None, rows: slice, now: float
    ) -> None:
        """Write age_s, access_count, success_rate, overlap for `rows` into target[:, :n]."""
        n = rows.stop - rows.start
        try:
            # float64 subtraction: float32 cannot hold Unix seconds (128 s resolution)
            np.subtract(
                now,
                np.asarray(batch.created_at, np.float64)[rows],
                out=target[0, :n],
                casting="same_kind",
            )
            target[1, :n] = batch.access_count[rows]
            target[2, :n] = batch.success_rate[rows]
            if batch.metadata_overlap is not None:
                target[3, :n] = batch.metadata_overlap[rows]
            elif batch.tags is not None and tags:
                shared = np.bitwise_count(np.asarray(batch.tags[rows], np.uint64) & np.uint64(tags))
                target[3, :n] = shared / float(int(tags).bit_count())
            else:
                target[3, :n] = 0.0
        except (ValueError, TypeError) as exc:
            raise InvalidRequestError(
                "candidates",
                "columns of the wrong length or type",
                f"created_at, access_count, success_rate of length {len(batch)}",
                str(exc),
            ) from None

    def _problems(
        self, out: np.ndarray, batch: CandidateBatch, query: np.ndarray
    ) -> tuple[np.ndarray, bool]:
        """Raise for the first bad input row; else the model failed: fall back (rare path)."""
        input_bits = out[ROW_PROBLEM].astype(np.int64) & ~feats.PROBLEM_MODEL_OUTPUT
        if input_bits.any():
            raise_problem(input_bits, batch, query, self.config.max_future_skew_s)
        # The model gave non-finite scores: use the weighted-feature heuristic instead.
        # Its scores carry no calibration, so uncertainty is 1 and nothing goes lightweight.
        out = out.copy()
        out[ROW_CONF] = out[ROW_HEURISTIC]
        out[ROW_UNC] = 1.0
        out[ROW_LIGHT] = 0.0
        return out, True

    # -- routing --------------------------------------------------------------------------
    def route(self, request: RoutingRequest) -> RoutingResponse:
        """Score, bound and rank every candidate of one query."""
        start = time.perf_counter_ns()
        loaded = self._loaded
        request = with_text_embeddings(request, self.encoder)
        query, batch, embeddings = self._batch(request, loaded.dim)
        n = embeddings.shape[0]
        if n > MAX_BUCKET:
            raise InvalidRequestError(
                "candidates",
                f"{n} candidates",
                f"at most {MAX_BUCKET} per route() call",
                "use score_batch() for larger sets",
            )
        ids = batch.ids if isinstance(batch.ids, np.ndarray) else np.asarray(batch.ids)
        self._check_ids(ids, n)
        now = float(self._clock())
        with self._lock:
            if n <= HOST_REDUCE_ROWS:
                reduced = self._reduce(batch, embeddings, query, request.tags, now)
                prepared = time.perf_counter_ns()
                out = loaded.score_reduced(reduced)[:, :n]
            else:
                staged, aux = self._stage(batch, embeddings, query, request.tags, 0, n, now)
                prepared = time.perf_counter_ns()
                out = loaded.score(staged, aux)[:, :n]
        done = time.perf_counter_ns()
        fallback = False
        if np.count_nonzero(out[ROW_PROBLEM]):  # (a third of .any()'s cost on 100 rows)
            out, fallback = self._problems(out, batch, query)
        order = (-out[ROW_CONF]).argsort(kind="stable")
        ranked = out.take(order, axis=1)
        self.stats.routed_requests += 1
        self.stats.scored_candidates += n
        self.stats.fallback_requests += fallback
        return RoutingResponse(
            request_id=request.request_id or new_request_id(),
            candidate_ids=ids[order],
            confidence=ranked[ROW_CONF],
            uncertainty=ranked[ROW_UNC],
            use_lightweight=ranked[ROW_LIGHT] > 0,
            inference_time_us=(done - prepared) / 1e3,
            feature_time_us=(prepared - start) / 1e3,
            candidates_processed=n,
            model_version=loaded.model.version,
            used_fallback=fallback,
        )

    def score_batch(
        self, query_embedding: Any, batch: CandidateBatch, tags: int | None = None
    ) -> BatchScores:
        """Score any number of candidates in input order (no ranking, no id checks).

        Work is done in chunks of `BATCH_CHUNK` rows; full chunks of an array allocated
        with `aligned_empty` are read in place, others are copied into a staging buffer
        first (one extra pass over memory).
        """
        loaded = self._loaded
        query, batch, embeddings = self._batch(
            RoutingRequest(query_embedding, batch, tags=tags), loaded.dim
        )
        n = embeddings.shape[0]
        now = float(self._clock())
        out = np.empty((5, n), np.float32)
        for start in range(0, n, BATCH_CHUNK):
            stop = min(n, start + BATCH_CHUNK)
            size = stop - start
            with self._lock:
                staged, aux = self._stage(batch, embeddings, query, tags, start, stop, now)
                out[:, start:stop] = loaded.score(staged, aux)[:, :size]
        fallback = False
        if out[ROW_PROBLEM].any():  # a fallback applies to the whole batch: one scorer for all
            out, fallback = self._problems(out, batch, query)
        self.stats.scored_candidates += n
        self.stats.fallback_requests += fallback
        return BatchScores(
            confidence=out[ROW_CONF],
            uncertainty=out[ROW_UNC],
            use_lightweight=out[ROW_LIGHT] > 0,
            model_version=loaded.model.version,
            used_fallback=fallback,
        )


def _warm(loaded: LoadedModel, up_to_candidates: int) -> None:
    for bucket in (b for b in BUCKETS if b <= max(BUCKETS[0], up_to_candidates)):
        loaded.score(
            np.zeros((bucket, loaded.dim), np.float32),
            np.ones(4 * bucket + loaded.dim + 1, np.float32),
        )
        if bucket <= HOST_REDUCE_ROWS:
            loaded.score_reduced(np.ones(6 * bucket + 2, np.float32))
