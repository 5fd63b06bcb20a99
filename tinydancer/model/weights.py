"""Model files: FastGRNN weights (INT8) in safetensors with everything needed to serve them.

A file holds named tensors and a ``__metadata__`` map of JSON strings:

| key | content |
|---|---|
| ``format`` | `FORMAT_ID`; anything else is refused |
| ``mode`` | ``candidate`` or ``agent`` |
| ``version`` | the model version routers report (``<mode>-<content hash>`` unless given) |
| ``config`` | `FastGRNNConfig` as JSON |
| ``feature_schema`` | embedding model + dimension, the input features and their settings; agent mode adds the agent names of the output head |
| ``quantization`` | `quantization.QUANTIZATION_SCHEME` |
| ``conformal`` | alpha, n and qhat of the split-conformal calibration |
| ``info`` | training summary, metrics, lineage (free-form JSON) |

Tensors: ``<matrix>.q`` int8 + ``<matrix>.scale`` float32 for every 2-d parameter,
float32 vectors/scalars, and ``conformal.scores`` (n,) float32 ascending.
`load_model` checks all of it and raises `ModelFileError` naming the file, the tensor,
what was expected and what was found.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from tinydancer.errors import ConfigError, ModelFileError
from tinydancer.model.conformal import ConformalCalibration
from tinydancer.model.embedding import EmbeddingSpec
from tinydancer.model.fastgrnn import FastGRNNConfig, matrix_names
from tinydancer.model.quantization import QUANTIZATION_SCHEME, dequantize_numpy, stored_size_bytes

__all__ = [
    "FORMAT_ID",
    "RouterModel",
    "load_model",
    "save_model",
    "serving_model",
    "shipped_model_path",
]

FORMAT_ID = "tinydancer.fastgrnn.v1"
Mode = Literal["candidate", "agent"]
_MODES = ("candidate", "agent")
_REQUIRED_METADATA = (
    "format",
    "mode",
    "version",
    "config",
    "feature_schema",
    "quantization",
    "conformal",
)
_SCORES = "conformal.scores"


@dataclass(frozen=True, eq=False)
class RouterModel:
    """A servable model: stored (INT8) tensors, their schema and their calibration."""

    mode: Mode
    config: FastGRNNConfig
    stored: Mapping[str, np.ndarray]
    feature_schema: Mapping[str, Any]
    calibration: ConformalCalibration
    version: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigError(f"mode: got {self.mode!r}; expected one of {_MODES}")
        if not self.version:
            object.__setattr__(self, "version", f"{self.mode}-{self.content_hash()[:12]}")

    @property
    def embedding(self) -> EmbeddingSpec:
        return EmbeddingSpec.from_dict(self.feature_schema["embedding"])

    @property
    def size_bytes(self) -> int:
        """Bytes of weight data as stored (int8 matrices, float32 scales and vectors)."""
        return stored_size_bytes(self.stored)

    @property
    def sparsity(self) -> float:
        """Fraction of zero entries over the INT8 matrices."""
        qs = [v for k, v in self.stored.items() if k.endswith(".q")]
        total = sum(q.size for q in qs)
        return float(sum(int((q == 0).sum()) for q in qs) / total) if total else 0.0

    def with_info(self, **entries: Any) -> RouterModel:
        """A copy with entries added to `info` (same weights, same version)."""
        return RouterModel(
            self.mode,
            self.config,
            self.stored,
            self.feature_schema,
            self.calibration,
            self.version,
            {**self.info, **entries},
        )

    def float_params(self) -> dict[str, np.ndarray]:
        """Dequantized float32 parameters (what the jitted function computes with)."""
        return dequantize_numpy(self.stored)

    def content_hash(self) -> str:
        digest = hashlib.sha256(self.config.to_json().encode())
        for name in sorted(self.stored):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.stored[name]).tobytes())
        digest.update(json.dumps(self.feature_schema, sort_keys=True).encode())
        digest.update(self.calibration.scores.tobytes())
        return digest.hexdigest()


def save_model(model: RouterModel, path: str | os.PathLike[str]) -> Path:
    """Write `model` to `path` atomically (a temp file renamed into place)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v) for k, v in model.stored.items()}
    tensors[_SCORES] = np.ascontiguousarray(model.calibration.scores, dtype=np.float32)
    metadata = {
        "format": FORMAT_ID,
        "mode": model.mode,
        "version": model.version,
        "config": model.config.to_json(),
        "feature_schema": json.dumps(model.feature_schema, sort_keys=True),
        "quantization": json.dumps(QUANTIZATION_SCHEME, sort_keys=True),
        "conformal": model.calibration.metadata(),
        "info": json.dumps(model.info, sort_keys=True, default=str),
    }
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, target)
    return target


def _expected_tensors(config: FastGRNNConfig) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    expected: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    matrices = set(matrix_names(config))
    for name, shape in config.tensor_shapes().items():
        if name in matrices:
            expected[name + ".q"] = (shape, np.dtype(np.int8))
            expected[name + ".scale"] = ((shape[0],), np.dtype(np.float32))
        else:
            expected[name] = (shape, np.dtype(np.float32))
    return expected


def _json(path: str, metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as exc:
        raise ModelFileError(path, f"metadata {key!r} is not valid JSON: {exc}") from None


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def load_model(path: str | os.PathLike[str], *, expect_mode: Mode | None = None) -> RouterModel:
    """Read and validate a model file; every problem raises `ModelFileError`."""
    where = str(path)
    try:
        mode_bits = Path(where).stat().st_mode
    except FileNotFoundError:
        raise ModelFileError(where, "no such file") from None
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise ModelFileError(where[:200], f"not a usable path ({exc.strerror})") from None
    except ValueError as exc:  # e.g. an embedded NUL byte
        raise ModelFileError(
            where[:200].replace("\0", "\\0"), f"not a usable path ({exc})"
        ) from None
    if not stat.S_ISREG(mode_bits):  # a directory, /dev/zero, a FIFO: reading could never end
        kind = next((name for test, name in _FILE_KINDS if test(mode_bits)), "not a regular file")
        raise ModelFileError(
            where, "not a model file", expected="a regular .safetensors file", found=kind
        )
    try:
        with safe_open(where, framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(where, f"not a readable safetensors file ({exc})") from None

    missing = [k for k in _REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ModelFileError(
            where,
            f"__metadata__ lacks {missing}",
            expected=str(list(_REQUIRED_METADATA)),
            found=str(sorted(metadata)),
        )
    if metadata["format"] != FORMAT_ID:
        raise ModelFileError(
            where, "unknown format id", expected=FORMAT_ID, found=metadata["format"]
        )
    mode = metadata["mode"]
    if mode not in _MODES or (expect_mode is not None and mode != expect_mode):
        wanted = expect_mode or " or ".join(_MODES)
        raise ModelFileError(where, "wrong model mode", expected=wanted, found=mode)
    scheme = _json(where, metadata, "quantization")
    if not isinstance(scheme, dict) or scheme.get("name") != QUANTIZATION_SCHEME["name"]:
        raise ModelFileError(
            where,
            "unsupported quantization scheme",
            expected=QUANTIZATION_SCHEME["name"],
            found=str(scheme),
        )
    try:
        config = FastGRNNConfig.from_dict(_json(where, metadata, "config"))
    except (ConfigError, TypeError) as exc:
        raise ModelFileError(where, f"invalid config: {exc}") from None
    schema = _json(where, metadata, "feature_schema")
    try:
        EmbeddingSpec.from_dict(schema["embedding"])
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(
            where, "feature_schema lacks a valid 'embedding' {model, dim}"
        ) from None

    expected = _expected_tensors(config)
    expected[_SCORES] = (
        (tensors[_SCORES].shape[0],) if _SCORES in tensors else (-1,),
        np.dtype(np.float32),
    )
    for name, (shape, dtype) in expected.items():
        if name not in tensors:
            raise ModelFileError(
                where, "missing tensor", tensor=name, expected=f"{dtype} {shape}", found="nothing"
            )
        found = tensors[name]
        if found.shape != shape or found.dtype != dtype:
            raise ModelFileError(
                where,
                "wrong tensor shape or dtype",
                tensor=name,
                expected=f"{dtype} {shape}",
                found=f"{found.dtype} {found.shape}",
            )
        if dtype.kind == "f" and not np.isfinite(found).all():
            raise ModelFileError(
                where,
                "tensor holds NaN or inf",
                tensor=name,
                expected="finite values",
                found="non-finite values",
            )
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise ModelFileError(
            where,
            "unexpected tensors",
            tensor=unexpected[0],
            expected=str(sorted(expected)),
            found=str(unexpected),
        )
    scores = tensors.pop(_SCORES)
    if scores.size == 0 or np.any(np.diff(scores) < 0):
        raise ModelFileError(
            where, "conformal scores must be non-empty and ascending", tensor=_SCORES
        )
    if mode == "agent" and len(schema.get("agents", [])) != config.output_dim:
        raise ModelFileError(
            where,
            "feature_schema 'agents' must name every output of the head",
            expected=f"{config.output_dim} names",
            found=str(schema.get("agents")),
        )
    try:
        calibration = ConformalCalibration.from_metadata(metadata["conformal"], scores)
    except (ConfigError, KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(
            where, f"invalid conformal calibration: {exc}", tensor=_SCORES
        ) from None
    info = _json(where, metadata, "info") if "info" in metadata else {}
    return RouterModel(
        mode=mode,
        config=config,
        stored=tensors,
        feature_schema=schema,
        calibration=calibration,
        version=metadata["version"],
        info=info,
    )


def serving_model(source: RouterModel | str | os.PathLike[str] | None, mode: Mode) -> RouterModel:
    """The `mode` model a router serves: `source` itself when a model, the file at
    `source`, or the shipped one when None; refused (ModelFileError) unless of `mode`."""
    if not isinstance(source, RouterModel):
        return load_model(shipped_model_path(mode) if source is None else source, expect_mode=mode)
    if source.mode != mode:
        raise ModelFileError(source.version, "wrong model mode", expected=mode, found=source.mode)
    return source


def shipped_model_path(mode: Mode) -> Path:
    """Path of the default model shipped with the package (wheel) or the repository."""
    name = f"{mode}.safetensors"
    package = Path(__file__).resolve().parents[1]  # tinydancer/
    for candidate in (package / "_shipped_models" / name, package.parent / "models" / name):
        if candidate.is_file():
            return candidate
    raise ModelFileError(
        str(package.parent / "models" / name),
        "the shipped model is missing; run `tinydancer train` to build one",
    )
