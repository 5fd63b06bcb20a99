"""The fake upstreams: OpenAI's wire format, behaviours, determinism by seed."""

from __future__ import annotations

import httpx
import openai
import pytest

from tinydancer.gateway.fake_upstream import FakeBehaviour, FakeUpstreams

MESSAGES = [{"role": "user", "content": "two plus two"}]


def test_it_speaks_openai_streaming_and_not():
    with FakeUpstreams({"a": FakeBehaviour(tokens=5, model="gpt-fake")}) as fleet:
        client = openai.OpenAI(base_url=fleet.base_url("a"), api_key="x", max_retries=0)
        completion = client.chat.completions.create(model="gpt-fake", messages=MESSAGES)
        assert completion.choices[0].message.content == "0:a 1:a 2:a 3:a 4:a"
        assert completion.usage.completion_tokens == 5 and completion.model == "gpt-fake"
        chunks = list(
            client.chat.completions.create(
                model="gpt-fake",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 5 + 3
        assert chunks[-2].choices[0].finish_reason == "stop"
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            == "0:a 1:a 2:a 3:a 4:a"
        )
        capped = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2)
        assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 2
        assert [m.id for m in client.models.list()] == ["gpt-fake"]
        assert fleet.served("a") == 3 and fleet.requests("a")[-1].path == "/v1/models"


def test_a_continuation_carries_on_the_numbering():
    with FakeUpstreams({"b": FakeBehaviour(tokens=6)}) as fleet:
        partial = [
            *MESSAGES,
            {"role": "assistant", "content": "0:a 1:a"},
            {"role": "user", "content": "go on"},
        ]
        body = {"model": "b", "messages": partial}
        answer = httpx.post(f"{fleet.base_url('b')}/chat/completions", json=body).json()
        assert answer["choices"][0]["message"]["content"] == " 2:b 3:b 4:b 5:b"


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (FakeBehaviour(error_rate=1.0), 500),
        (FakeBehaviour(rate_limit_rate=1.0, retry_after_s=4), 429),
        (FakeBehaviour(api_key="k"), 401),
        (FakeBehaviour(reject=True), 400),
    ],
)
def test_failures_come_with_their_status(behaviour, status):
    with FakeUpstreams({"a": behaviour}) as fleet:
        response = httpx.post(
            f"{fleet.base_url('a')}/chat/completions", json={"messages": MESSAGES}
        )
        assert response.status_code == status
        if status == 429:
            assert response.headers["retry-after"] == "4"


def test_a_drop_cuts_the_stream_and_garbage_is_not_json():
    behaviours = {
        "d": FakeBehaviour(drop_rate=1.0, drop_after_chunks=2),
        "g": FakeBehaviour(garbage=True),
    }
    with FakeUpstreams(behaviours) as fleet:
        body = {"messages": MESSAGES, "stream": True}
        url = f"{fleet.base_url('d')}/chat/completions"
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("POST", url, json=body) as response,
        ):
            list(response.iter_lines())
        assert httpx.post(f"{fleet.base_url('g')}/chat/completions", json=body).text == "not json!"


def test_random_failures_are_fixed_by_the_seed_and_configure_changes_behaviour():
    def outcomes(seed: int) -> list[int]:
        fleet = FakeUpstreams({"a": FakeBehaviour(error_rate=0.5)}, seed=seed)
        with fleet, httpx.Client() as client:
            url = f"{fleet.base_url('a')}/chat/completions"
            return [client.post(url, json={"messages": MESSAGES}).status_code for _ in range(40)]

    first = outcomes(1)
    assert first == outcomes(1) and first != outcomes(2)
    assert 5 < first.count(500) < 35
    with FakeUpstreams({"a": FakeBehaviour()}) as fleet:
        url = f"{fleet.base_url('a')}/chat/completions"
        assert httpx.post(url, json={"messages": MESSAGES}).status_code == 200
        fleet.configure("a", error_rate=1.0)
        assert httpx.post(url, json={"messages": MESSAGES}).status_code == 500


def test_the_quality_of_an_answer_is_deterministic_and_follows_the_behaviour():
    fleet = FakeUpstreams(
        {"a": FakeBehaviour(quality=0.8), "b": FakeBehaviour(quality=0.3)}, seed=5
    )
    asks = [[{"role": "user", "content": f"question {i}"}] for i in range(200)]
    a = [fleet.quality("a", m) for m in asks]
    assert a == [fleet.quality("a", m) for m in asks] and len(set(a)) > 100
    assert all(0.7 <= q <= 0.9 for q in a)
    assert all(0.2 <= fleet.quality("b", m) <= 0.4 for m in asks)
    fleet.configure("a", quality=0.1)  # a drift
    assert max(fleet.quality("a", m) for m in asks) <= 0.2


def test_the_fleet_can_run_in_its_own_process():
    from tinydancer.gateway.fake_upstream import FakeUpstreamProcess

    behaviours = {"a": FakeBehaviour(tokens=3, quality=0.4), "b": FakeBehaviour(error_rate=1.0)}
    with FakeUpstreamProcess(behaviours, seed=9) as fleet:
        url = f"{fleet.base_url('a')}/chat/completions"
        answer = httpx.post(url, json={"messages": MESSAGES}).json()
        assert answer["choices"][0]["message"]["content"] == "0:a 1:a 2:a"
        assert (
            httpx.post(
                f"{fleet.base_url('b')}/chat/completions", json={"messages": MESSAGES}
            ).status_code
            == 500
        )
        same = FakeUpstreams(behaviours, seed=9)  # quality is computed, not asked for
        assert fleet.quality("a", MESSAGES) == same.quality("a", MESSAGES)
        port = fleet.ports["a"]
    with pytest.raises(httpx.ConnectError):  # stopped: the port is free again
        httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"messages": MESSAGES})
