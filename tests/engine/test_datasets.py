"""Routing-outcomes splits: loading, and combining several into one training set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.engine.split_factory import write_split
from tinydancer.cli import main
from tinydancer.datasets import combine_splits, describe_source, load_split
from tinydancer.model.weights import load_model


def test_combined_splits_keep_equal_ids_apart_and_take_the_union_of_agents(tmp_path):
    first = load_split(write_split(tmp_path / "x" / "one" / "train", ["a", "b"], 30, 0))
    second = load_split(write_split(tmp_path / "x" / "two" / "train", ["b", "c"], 20, 1))
    both = combine_splits([first, second])
    assert len(both) == 50 and len(set(both.prompt_ids)) == 50
    assert both.agents == ["a", "b", "c"]
    # the second split's rows have no outcome for "a", the first's none for "c"
    assert np.isnan(both.quality[30:, 0]).all() and np.isnan(both.quality[:30, 2]).all()
    np.testing.assert_array_equal(both.quality[:30, :2], first.quality)
    np.testing.assert_array_equal(both.quality[30:, 1:], second.quality)
    np.testing.assert_array_equal(both.embeddings[30:], second.embeddings)
    assert describe_source(both.source) == "x/one/train + x/two/train"
    assert combine_splits([first]) is first


def test_combining_splits_of_different_dimensions_names_them(tmp_path):
    first = load_split(write_split(tmp_path / "a", ["a"], 10, 0, dim=8))
    second = load_split(write_split(tmp_path / "b", ["a"], 10, 0, dim=16))
    with pytest.raises(ValueError, match=r"embedding dimensions \[8, 16\]"):
        combine_splits([first, second])


def test_train_accepts_data_repeated(tmp_path, capsys):
    one = write_split(tmp_path / "d" / "one" / "train", ["a", "b"], 80, 0)
    two = write_split(tmp_path / "d" / "two" / "train", ["b", "c"], 60, 1)
    out = tmp_path / "m.safetensors"
    code = main(["train", "--data", str(one), "--data", str(two), "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    model = load_model(out, expect_mode="agent")
    assert model.feature_schema["agents"] == ["a", "b", "c"]
    assert summary["prompts"]["fit"] == 140
    assert model.info["lineage"]["data"] == "d/one/train + d/two/train"


def test_train_refuses_the_same_split_twice(tmp_path, capsys):
    one = write_split(tmp_path / "one", ["a"], 20, 0)
    code = main(["train", "--data", str(one), "--data", f"{one}/", "--out", str(tmp_path / "m")])
    assert code == 2
    assert "same directory as --data" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
