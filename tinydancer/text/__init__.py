"""Text in: a local all-MiniLM-L6-v2 encoder in JAX (`TextEncoder`), so that requests can
carry prompts instead of embeddings. `bert.py` is the model, `reference.py` its numpy
twin, `weights.py` where the weights come from, `tokens.py` the tokenizer settings."""

from tinydancer.text.encoder import EncoderStats, TextEncoder, TextEncoderConfig, default_encoder
from tinydancer.text.weights import INSTALL_LINE, EncoderNotFoundError, find_encoder_dir

__all__ = [
    "INSTALL_LINE",
    "EncoderNotFoundError",
    "EncoderStats",
    "TextEncoder",
    "TextEncoderConfig",
    "default_encoder",
    "find_encoder_dir",
]
