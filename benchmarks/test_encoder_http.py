"""End to end: /v1/route with `text` against `embedding_b64` of the same prompt, in one run
(sequential, call by call interleaved), and the encoder alone on that prompt in this
process (the replica unpinned, like this process): the difference between the two routes should be the encoder's cost and nothing
else. Each text call sends a new text (a counter appended), so the replica's cache never
answers it.
"""

from __future__ import annotations

import base64
import itertools
import tempfile

import httpx
import pytest

from cluster.config import AppArgs
from cluster.runner import LocalCluster

from ._compare import interleaved_medians, record
from .test_cluster import _port

PROMPT = (
    "Which of these would best help a student measure the mass of a small rock? "
    "A. a meter stick B. a balance C. a graduated cylinder D. a thermometer"
)


@pytest.fixture(scope="module")
def url(encoder):
    # unpinned, like this process, so that "the encoder alone" runs on the same cores
    args = AppArgs(
        history_path=tempfile.mkdtemp() + "/history.duckdb", num_replicas=1, pin_replicas=False
    )
    cluster = LocalCluster.start(args, num_cpus=2, port=_port())
    cluster.wait_ready(compiled=True)
    yield cluster.url
    cluster.stop()


def test_route_text_vs_embedding_b64(benchmark, encoder, url):
    counter = itertools.count()
    vector = encoder.encode([PROMPT])[0]
    b64 = base64.b64encode(vector.astype("<f4").tobytes()).decode()
    quick = benchmark.disabled
    with httpx.Client(base_url=url, timeout=120) as client:

        def by_text() -> None:
            reply = client.post("/v1/route", json={"text": f"{PROMPT} ({next(counter)})"})
            assert reply.status_code == 200, reply.text[:300]

        def by_embedding() -> None:
            reply = client.post("/v1/route", json={"embedding_b64": b64})
            assert reply.status_code == 200, reply.text[:300]

        def encoder_alone() -> None:
            encoder.encode([f"{PROMPT} ({next(counter)})"])

        by_text()  # the replica's encoder may still be loading: wait for it once
        medians = interleaved_medians(
            {"text": by_text, "embedding_b64": by_embedding, "encoder_alone": encoder_alone},
            rounds=2 if quick else 60,
            warmup=1 if quick else 5,
        )
        benchmark.pedantic(by_text, rounds=1 if quick else 10, iterations=1)
    record(benchmark, medians, "text")
    extra = medians["text"] - medians["embedding_b64"]
    benchmark.extra_info["text_minus_embedding_s"] = extra
    benchmark.extra_info["extra_over_encoder_alone"] = extra / medians["encoder_alone"]
    print(
        f"\n/v1/route text {medians['text'] * 1e3:.1f} ms, embedding_b64 "
        f"{medians['embedding_b64'] * 1e3:.1f} ms: +{extra * 1e3:.1f} ms = "
        f"{extra / medians['encoder_alone']:.2f}x the encoder alone "
        f"({medians['encoder_alone'] * 1e3:.1f} ms)"
    )
