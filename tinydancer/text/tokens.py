"""Texts -> token ids as sentence-transformers feeds all-MiniLM-L6-v2, and bucketing.

The model's ``tokenizer.json`` truncates at 128 tokens and pads every input to 128;
sentence-transformers overrides both (``max_seq_length`` 256 from
``sentence_bert_config.json``, padding to the longest input). So do we: no padding here
(`bucket` pads to the compiled shape), truncation at 256 tokens including [CLS] and [SEP].
Texts are stripped first, as sentence-transformers does.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence

import numpy as np

from tinydancer.errors import ModelFileError

__all__ = ["Tokenizer", "bucket_for", "pad_batch"]


class Tokenizer:
    """`tokenizers.Tokenizer` from ``tokenizer.json`` with sentence-transformers' settings."""

    def __init__(self, path: str | os.PathLike[str], max_tokens: int) -> None:
        from tokenizers import Tokenizer as _RustTokenizer

        where = str(path)
        try:
            tokenizer = _RustTokenizer.from_file(where)
        except Exception as exc:  # tokenizers raises a bare Exception for bad files
            raise ModelFileError(where, f"not a readable tokenizer.json ({exc})") from None
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_tokens)
        for token in ("[CLS]", "[SEP]", "[PAD]"):
            if tokenizer.token_to_id(token) is None:
                raise ModelFileError(
                    where, "not a BERT WordPiece tokenizer", expected=token, found="no such token"
                )
        if tokenizer.token_to_id("[PAD]") != 0:
            raise ModelFileError(
                where,
                "[PAD] must be token 0",
                expected="0",
                found=str(tokenizer.token_to_id("[PAD]")),
            )
        self._tokenizer = tokenizer
        self.max_tokens = max_tokens

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """One list of token ids per text ([CLS] ... [SEP], at most `max_tokens`)."""
        encodings = self._tokenizer.encode_batch([t.strip() for t in texts])
        return [e.ids for e in encodings]


def bucket_for(size: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= size (buckets sorted ascending; size <= the last)."""
    return buckets[bisect.bisect_left(buckets, size)]


def pad_batch(rows: Sequence[Sequence[int]], batch: int, seq: int) -> tuple[np.ndarray, np.ndarray]:
    """(batch, seq) int32 ids (0 = [PAD]) and (batch, seq) int32 mask for `rows`."""
    ids = np.zeros((batch, seq), np.int32)
    mask = np.zeros((batch, seq), np.int32)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask
