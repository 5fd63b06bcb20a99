"""Schemathesis hooks for tests/cluster/test_schemathesis.py (loaded via SCHEMATHESIS_HOOKS).

* `before_call`: feedback bodies get the request id (and agent) of a real decision, routed
  just before, so `/v1/feedback` is exercised past its 404 for unknown ids (and report a
  success). Only a body whose `request_id` is already schema-valid is changed: negative
  cases stay negative.
* `admin_routes_authenticate_first`: without the admin token, an admin route must answer
  401 whatever the body (issue 12: validation used to run first and answer 422, or 500).
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import schemathesis

from cluster.http import is_admin_route

DIM = 384


def _decision() -> dict[str, Any]:
    base = os.environ["TINYDANCER_TEST_URL"]
    body = json.dumps({"embedding": [1.0] + [0.0] * (DIM - 1)}).encode()
    request = urllib.request.Request(
        f"{base}/v1/route", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    if case.operation.path != "/v1/feedback":
        return
    request_id = body.get("request_id")
    if not (isinstance(request_id, str) and 1 <= len(request_id) <= 64):
        return
    decision = _decision()
    body["request_id"] = decision["request_id"]
    if isinstance(body.get("agent"), str) and 1 <= len(body["agent"]) <= 256:
        body["agent"] = decision["agent"]
    if isinstance(body.get("success"), bool):  # random failures would open circuits that
        body["success"] = True  # later tests of the session rely on being closed


@schemathesis.check
def admin_routes_authenticate_first(ctx: Any, response: Any, case: Any) -> bool | None:
    if not is_admin_route(case.method, case.operation.path):
        return None
    sent = response.request.headers.get("Authorization", "")
    if sent == os.environ.get("TINYDANCER_TEST_ADMIN", "") and sent:
        return None
    if response.status_code != 401:
        raise AssertionError(
            f"{case.method} {case.operation.path} without the admin token answered "
            f"{response.status_code}, not 401 (authentication must come before validation)"
        )
    return None
