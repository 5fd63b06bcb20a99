"""The package's public surface and its promises: cheap import, no ray, shipped model."""

from __future__ import annotations

import json
import subprocess
import sys

import tinydancer
from tinydancer.cli import main
from tinydancer.weights import load_model, shipped_model_path


def test_import_is_cheap_and_never_imports_ray():
    code = (
        "import sys, tinydancer; assert 'ray' not in sys.modules; assert 'jax' not in sys.modules; "
        "tinydancer.Router; assert 'ray' not in sys.modules; import os; "
        "assert len(os.sched_getaffinity(0)) == os.cpu_count(), 'import must not pin'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_sources_never_import_ray():
    from pathlib import Path

    root = Path(tinydancer.__file__).parent
    offenders = [
        str(p)
        for p in root.rglob("*.py")
        if any(
            line.strip().startswith(("import ray", "from ray"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []


def test_public_api_is_pinned():
    assert set(tinydancer.__all__) >= {
        "Router",
        "RouterConfig",
        "RoutingRequest",
        "RoutingResponse",
        "RoutingDecision",
        "Candidate",
        "CandidateBatch",
        "TinyDancerError",
        "ModelFileError",
        "InvalidRequestError",
        "EmbeddingError",
        "load_model",
        "save_model",
        "pin_to_core",
    }
    for name in tinydancer.__all__:
        assert getattr(tinydancer, name) is not None


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
