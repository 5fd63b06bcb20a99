"""The text encoder: latency and throughput for 1, 8 and 64 shared-data prompts and one
10-token prompt, against the plain-numpy reference (interleaved, same run), and its FLOP
rate as a share of this machine's fp32 matmul peak, measured in the same run by a jitted
`jnp.dot` of the encoder's own layer shapes.

FLOPs are counted on the padded shapes actually computed (`TextEncoder.plan`); the
padding share is reported apart. The encoder runs without its cache (every call encodes).
Run pinned and unpinned (see the README):

    TINYDANCER_BENCH_PIN=0 .venv/bin/python -m pytest benchmarks/test_encoder.py
    .venv/bin/python -m pytest benchmarks/test_encoder.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq
import pytest

from tinydancer.text import INSTALL_LINE, EncoderNotFoundError, TextEncoder, TextEncoderConfig
from tinydancer.text.bert import FEED_FORWARD, HIDDEN, layer_flops

from ._compare import interleaved_medians, record

SHORT = "Explain the rules of chess to me briefly"  # 10 tokens with [CLS] and [SEP]


@pytest.fixture(scope="module")
def prompts(shared_data) -> list[str]:
    path = shared_data / "routerbench" / "arc_challenge" / "test" / "prompts.parquet"
    texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))]


def _peak_flops(tokens: int, rounds: int) -> float:
    """FLOP/s of one jitted pass of the four dense matmul shapes of a layer for
    `tokens` rows: what the encoder's dense layers could reach on this machine."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(tokens, HIDDEN)), jnp.float32)
    h = jnp.asarray(rng.normal(size=(tokens, FEED_FORWARD)), jnp.float32)
    ws = [
        jnp.asarray(rng.normal(size=shape), jnp.float32)
        for shape in (
            (HIDDEN, 3 * HIDDEN),
            (HIDDEN, HIDDEN),
            (HIDDEN, FEED_FORWARD),
            (FEED_FORWARD, HIDDEN),
        )
    ]

    @jax.jit
    def dense(x, h, a, b, c, d):  # the same four products a layer computes, independent
        return jnp.dot(x, a).sum() + jnp.dot(x, b).sum() + jnp.dot(x, c).sum() + jnp.dot(h, d).sum()

    def run() -> None:
        dense(x, h, *ws).block_until_ready()

    seconds = interleaved_medians({"dot": run}, rounds=rounds, warmup=1)["dot"]
    return (
        2 * tokens * (HIDDEN * 3 * HIDDEN + HIDDEN * HIDDEN + 2 * HIDDEN * FEED_FORWARD) / seconds
    )


@pytest.mark.shared_data
@pytest.mark.parametrize("n", [1, 8, 64])
def test_encoder_on_shared_prompts(benchmark, encoder, prompts, pinning, n):
    texts = prompts[:n]
    _measure(benchmark, encoder, texts, pinning, f"{n} shared prompts")


def test_encoder_on_a_ten_token_prompt(benchmark, encoder, pinning):
    assert encoder.encode_counted([SHORT])[1][0] == 10
    _measure(benchmark, encoder, [SHORT], pinning, "one 10-token prompt")


def _measure(benchmark, encoder: TextEncoder, texts: list[str], pinning: str, label: str) -> None:
    rows = encoder.tokenizer.ids(texts)
    lengths = np.array([len(r) for r in rows])
    plan = encoder.plan(lengths)
    padded = sum(b * s for _, b, s in plan)
    flops = sum(layer_flops(b, s) for _, b, s in plan)
    encoder.encode(texts)  # compile any shape not warmed
    quick = benchmark.disabled  # CI's smoke pass: one round of each
    oracle = texts[:8] if quick else texts  # the smoke pass keeps the numpy side short
    medians = interleaved_medians(
        {"jax": lambda: encoder.encode(texts), "numpy": lambda: encoder.reference(oracle)},
        rounds=1 if quick else (5 if len(texts) >= 64 else 15),
        warmup=0 if quick else 1,
    )
    record(benchmark, medians, "jax")
    peak = _peak_flops(max(b * s for _, b, s in plan), rounds=1 if quick else 15)
    info = benchmark.extra_info
    info.update(
        {
            "label": label,
            "pinning": pinning,
            "prompts": len(texts),
            "tokens_p50": float(np.median(lengths)),
            "padding_share": 1 - float(lengths.sum()) / padded,
            "jax_prompts_per_s": len(texts) / medians["jax"],
            "numpy_prompts_per_s": len(oracle) / medians["numpy"],
            "jax_gflop_per_s": flops / medians["jax"] / 1e9,
            "matmul_peak_gflop_per_s": peak / 1e9,
            "share_of_peak": flops / medians["jax"] / peak,
        }
    )
    print(
        f"\n{label} ({pinning}): jax {medians['jax'] * 1e3:.1f} ms "
        f"({info['jax_prompts_per_s']:.1f} prompts/s), numpy {medians['numpy'] * 1e3:.1f} ms, "
        f"{info['jax_gflop_per_s']:.1f} GFLOP/s = {info['share_of_peak']:.0%} of the "
        f"{info['matmul_peak_gflop_per_s']:.1f} GFLOP/s matmul peak, "
        f"padding {info['padding_share']:.0%}"
    )
    benchmark.pedantic(encoder.encode, args=(texts,), rounds=1 if quick else 5, iterations=1)


def test_tenth_turn_of_a_conversation_against_one_message(benchmark, pinning):
    """The cache at work: a chat's 10th turn encodes its one new message, not ten."""
    from tinydancer.agents.config import AgentRouterConfig
    from tinydancer.agents.registry import AgentRegistry
    from tinydancer.agents.router import AgentRouter
    from tinydancer.agents.types import AgentRequest
    from tinydancer.model.weights import load_model, shipped_model_path

    try:
        cached = TextEncoder(TextEncoderConfig(cache_size=10_000))
    except EncoderNotFoundError:
        pytest.skip(f"text encoder weights not installed ({INSTALL_LINE})")
    model = load_model(shipped_model_path("agent"))
    registry = AgentRegistry.for_model(model, agents=model.feature_schema["agents"][:4])
    router = AgentRouter(registry, config=AgentRouterConfig(seed=0), model=model, encoder=cached)
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"{SHORT}, part {i} of nine"}
        for i in range(9)
    ]
    counter = iter(range(10**9))

    def fresh() -> str:  # a new message every call: one cache miss
        return f"{SHORT}, and then question {next(counter)}"

    def single() -> None:
        router.route_batch([AgentRequest(text=fresh())], remember=False)

    def tenth_turn() -> None:
        chat = [*history, {"role": "user", "content": fresh()}]
        router.route_batch([AgentRequest(chat=chat)], remember=False)

    tenth_turn()  # the nine earlier messages are now cached
    quick = benchmark.disabled
    medians = interleaved_medians(
        {"tenth_turn": tenth_turn, "single": single},
        rounds=1 if quick else 40,
        warmup=0 if quick else 3,
    )
    record(benchmark, medians, "tenth_turn")
    benchmark.extra_info["pinning"] = pinning
    print(
        f"\n10th turn ({pinning}): {medians['tenth_turn'] * 1e3:.1f} ms vs one message "
        f"{medians['single'] * 1e3:.1f} ms ({medians['tenth_turn'] / medians['single']:.2f}x)"
    )
    benchmark.pedantic(tenth_turn, rounds=1 if quick else 10, iterations=1)
