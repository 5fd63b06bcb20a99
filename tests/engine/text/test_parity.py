"""Parity with sentence-transformers: the shared data's prompts were embedded with it
(all-MiniLM-L6-v2, max_seq_length 256); ours must agree to cosine >= 0.9999 on every
prompt of every split."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def test_every_shared_prompt_matches_sentence_transformers(shared_data, encoder):
    splits = sorted(shared_data.glob("*/*/*/prompts.parquet"))
    assert splits, f"no prompts.parquet under {shared_data}"
    worst = {}
    for path in splits:
        table = pq.read_table(path, columns=["text", "embedding"]).to_pydict()
        stored = np.asarray(table["embedding"], np.float32)  # (N, 384)
        ours = encoder.encode(table["text"])
        cosine = (ours * stored).sum(1) / np.linalg.norm(stored, axis=1)
        name = str(path.parent.relative_to(shared_data))
        worst[name] = (float(cosine.min()), float(cosine.mean()), len(cosine))
        print(
            f"{name}: {len(cosine)} prompts, cosine min {cosine.min():.7f} mean {cosine.mean():.7f}"
        )
    assert all(low >= 0.9999 for low, _, _ in worst.values()), worst
