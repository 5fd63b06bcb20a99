from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from tinydancer import ModelFileError
from tinydancer.model.weights import (
    FORMAT_ID,
    load_model,
    save_model,
    serving_model,
    shipped_model_path,
)


@pytest.fixture(scope="module")
def shipped():
    return load_model(shipped_model_path("candidate"))


def _raw(path):
    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


def test_round_trip_keeps_everything(shipped, tmp_path):
    path = save_model(shipped, tmp_path / "m.safetensors")
    again = load_model(path)
    assert again.version == shipped.version and again.mode == "candidate"
    assert again.config == shipped.config
    assert again.feature_schema == shipped.feature_schema
    assert again.calibration.alpha == shipped.calibration.alpha
    np.testing.assert_array_equal(again.calibration.scores, shipped.calibration.scores)
    for name, value in shipped.stored.items():
        np.testing.assert_array_equal(again.stored[name], value)
    tensors, metadata = _raw(path)
    assert metadata["format"] == FORMAT_ID
    assert json.loads(metadata["feature_schema"])["embedding"] == {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "dim": 384,
    }
    assert all(v.dtype == np.int8 for k, v in tensors.items() if k.endswith(".q"))


def test_size_bytes_is_what_the_file_stores(shipped):
    assert shipped.size_bytes == sum(v.nbytes for v in shipped.stored.values())
    assert shipped.size_bytes < 1024


def _rewrite(src, dst, *, drop=None, replace=None, metadata=None):
    tensors, meta = _raw(src)
    if drop:
        tensors.pop(drop)
    if replace:
        tensors.update(replace)
    meta.update(metadata or {})
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "W.q"}, "'W.q': missing tensor"),
        (
            {"replace": {"W.q": np.zeros((8, 4), np.int8)}},
            "'W.q'.*expected int8 \\(8, 5\\), found int8 \\(8, 4\\)",
        ),
        ({"replace": {"W.q": np.zeros((8, 5), np.float32)}}, "'W.q'.*found float32"),
        ({"replace": {"b_h": np.full((8,), np.nan, np.float32)}}, "'b_h'.*NaN"),
        ({"replace": {"extra": np.zeros(2, np.float32)}}, "unexpected tensors"),
        (
            {"metadata": {"format": "ruvector.v0"}},
            "unknown format id.*expected tinydancer.fastgrnn.v1, found ruvector.v0",
        ),
        ({"metadata": {"mode": "agent"}}, "agents"),
        ({"metadata": {"config": "{not json"}}, "'config' is not valid JSON"),
        ({"metadata": {"feature_schema": "{}"}}, "embedding"),
        ({"metadata": {"quantization": '{"name": "fp16"}'}}, "quantization scheme"),
    ],
    ids=[
        "missing",
        "shape",
        "dtype",
        "nan",
        "extra",
        "format",
        "mode",
        "config",
        "schema",
        "scheme",
    ],
)
def test_bad_files_name_the_file_and_the_problem(shipped, tmp_path, change, message):
    good = save_model(shipped, tmp_path / "good.safetensors")
    bad = _rewrite(good, tmp_path / "bad.safetensors", **change)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(bad)
    assert str(bad) in str(info.value)


def test_corrupt_and_missing_files(tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 7 + b"garbage")
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_model(corrupt)
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "absent.safetensors")


def test_truncated_file_is_rejected(shipped, tmp_path):
    path = save_model(shipped, tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(ModelFileError):
        load_model(path)


def test_expected_mode_is_enforced(shipped, tmp_path):
    path = save_model(shipped, tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="expected agent, found candidate"):
        load_model(path, expect_mode="agent")


def test_serving_model_takes_a_model_a_file_or_the_shipped_one_of_its_mode(shipped, tmp_path):
    assert serving_model(shipped, "candidate") is shipped
    path = save_model(shipped, tmp_path / "m.safetensors")
    assert serving_model(str(path), "candidate").content_hash() == shipped.content_hash()
    assert serving_model(None, "candidate").content_hash() == shipped.content_hash()
    assert serving_model(None, "agent").mode == "agent"
    with pytest.raises(ModelFileError, match="expected agent, found candidate"):
        serving_model(shipped, "agent")
    with pytest.raises(ModelFileError, match="expected agent, found candidate"):
        serving_model(path, "agent")


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/dev/zero", "a character device"), (None, "a directory")],
    ids=["dev-zero", "directory"],
)
def test_a_device_or_a_directory_is_named_as_such(tmp_path, path, kind):
    with pytest.raises(ModelFileError, match=f"not a model file.*found {kind}"):
        load_model(path or tmp_path)


def test_a_path_with_a_nul_byte_is_a_model_file_error_not_a_crash():
    with pytest.raises(ModelFileError, match="not a usable path"):
        load_model("models/agent\0.safetensors")
