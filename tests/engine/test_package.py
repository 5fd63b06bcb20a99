"""The package's public surface and its promises: cheap import, no ray, shipped model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import tinydancer
from tinydancer.cli import main
from tinydancer.model.weights import load_model, shipped_model_path

PUBLIC_API = [
    "OBJECTIVES",
    "Agent",
    "AgentDecision",
    "AgentError",
    "AgentMetrics",
    "AgentRegistry",
    "AgentRequest",
    "AgentRouter",
    "AgentRouterConfig",
    "AgentType",
    "AgentsUnavailableError",
    "Alternative",
    "BanditConfig",
    "BatchScores",
    "BreakerConfig",
    "BreakerState",
    "Candidate",
    "CandidateBatch",
    "CircuitBreaker",
    "ColumnarDecisions",
    "ConfigError",
    "ConformalCalibration",
    "Constraints",
    "DecisionColumns",
    "CostModel",
    "DuplicateAgentError",
    "EmbeddingError",
    "EmbeddingSpec",
    "Endpoint",
    "FastGRNNConfig",
    "FeatureConfig",
    "FeedbackError",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "HistoryConfig",
    "HistoryError",
    "HistoryReader",
    "HistoryStore",
    "InvalidRequestError",
    "ModelFileError",
    "NoEligibleAgentError",
    "OutcomeColumns",
    "Router",
    "RouterConfig",
    "RouterModel",
    "RouterStats",
    "RoutingDecision",
    "RoutingOutcomes",
    "RoutingRequest",
    "RoutingResponse",
    "TextEncoder",
    "TextEncoderConfig",
    "TinyDancerError",
    "Transition",
    "UnknownAgentError",
    "aligned_empty",
    "evaluate",
    "from_agent_decisions",
    "load_model",
    "load_split",
    "pin_to_core",
    "replay",
    "save_model",
]
ENGINE = Path(tinydancer.__file__).parent


def test_import_is_cheap_and_never_imports_ray():
    code = (
        "import sys, tinydancer; assert 'ray' not in sys.modules; assert 'jax' not in sys.modules; "
        "tinydancer.Router; assert 'ray' not in sys.modules; import os; "
        "assert len(os.sched_getaffinity(0)) == os.cpu_count(), 'import must not pin'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_api_is_pinned_and_every_name_loads_without_ray_or_the_serving_layer():
    assert sorted(tinydancer.__all__) == sorted(PUBLIC_API)
    code = (
        "import sys, tinydancer as td\n"
        "for name in td.__all__:\n"
        "    assert getattr(td, name) is not None, name\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'cluster'))\n"
        "assert not leaked, leaked\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_sources_never_name_ray_or_the_serving_layer():
    # Read, not imported: an import hidden in a function or a string would escape a
    # sys.modules check. Words, so that "array" or "clusters" of data stay fine.
    word = re.compile(r"\b(ray|cluster)\b", re.IGNORECASE)
    offenders = [
        f"{p.relative_to(ENGINE)}:{number}: {line.strip()}"
        for p in ENGINE.rglob("*.py")
        for number, line in enumerate(p.read_text().splitlines(), 1)
        if word.search(line)
    ]
    assert offenders == []


def test_modules_stay_readable_in_one_sitting():
    limit = 410
    packages = (ENGINE, ENGINE.parent / "cluster")
    long = {
        str(p.relative_to(ENGINE.parent)): n
        for package in packages
        for p in package.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > limit
    }
    assert long == {}
    top_level = sorted(p.name for p in ENGINE.glob("*.py"))
    assert len(top_level) <= 10, top_level


def test_errors_module_is_public_and_documents_the_tree():
    from tinydancer import errors

    assert "TinyDancerError" in errors.__doc__ and "└──" in errors.__doc__
    for name in errors.__all__:
        assert getattr(tinydancer, name) is getattr(errors, name)


def test_errors_share_one_base():
    for name in tinydancer.__all__:
        value = getattr(tinydancer, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, tinydancer.TinyDancerError)


def test_shipped_candidate_model_is_found_and_documented():
    path = shipped_model_path("candidate")
    model = load_model(path)
    assert model.mode == "candidate" and model.size_bytes < 1024
    card = (path.parent / "README.md").read_text()
    assert model.version in card and "synthetic" in card


def test_cli_inspect_and_demo(capsys):
    assert main(["inspect", str(shipped_model_path("candidate"))]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mode"] == "candidate" and info["embedding"]["dim"] == 384
    assert main(["demo", "--in-process", "--requests", "30", "--candidates", "20", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests"] == 30 and summary["fallback_requests"] == 0
    assert summary["lightweight_precision"] is None or summary["lightweight_precision"] > 0.5


def test_cli_reports_errors_without_a_traceback(capsys, tmp_path):
    assert main(["inspect", str(tmp_path / "missing.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_every_lazy_name_is_exported():
    from tinydancer import _LAZY

    assert set(_LAZY) <= set(tinydancer.__all__)
