"""One encoder for the whole session (loading and warming it costs seconds); skips with
the install line when the weights are not installed."""

from __future__ import annotations

import pytest

from tinydancer.text import INSTALL_LINE, EncoderNotFoundError, TextEncoder, find_encoder_dir


def weights_or_skip() -> None:
    try:
        find_encoder_dir()
    except EncoderNotFoundError:
        pytest.skip(f"text encoder weights not installed ({INSTALL_LINE})")


@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    weights_or_skip()
    return TextEncoder()
