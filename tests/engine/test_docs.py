"""Every in-process Python example of the README and docs/ runs as written.

Examples run in order, one shared namespace per document, in a temporary directory,
with a few vectors predefined (`E`, `q`, `m1`…): what a reader would have at hand.
Examples that need a running cluster (they import ray) are run by the cluster tests.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_examples(path: Path) -> list[str]:
    return _BLOCK.findall(path.read_text())


def needs_cluster(code: str) -> bool:
    return bool(re.search(r"^\s*(from ray|import ray)\b", code, re.M))


def vectors(seed: int = 0) -> dict[str, object]:
    """Unit all-MiniLM-sized vectors and candidate columns, as a reader would have."""
    import tinydancer as td

    rng = np.random.default_rng(seed)

    def unit(*shape: int) -> np.ndarray:
        x = rng.normal(size=(*shape, 384)).astype(np.float32)
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    n = 100
    now = time.time()
    E = unit(n)
    big_n = 5000
    return {
        "E": E,
        "q": unit(),
        "e": unit(),
        "vector": unit().tolist(),
        "m1": unit(),
        "m2": unit(),
        "m3": unit(),
        "created_at": now - rng.uniform(0, 86_400 * 30, n),
        "counts": rng.integers(0, 1000, n),
        "rates": rng.uniform(0, 1, n).astype(np.float32),
        "overlap": rng.uniform(0, 1, n).astype(np.float32),
        "big": td.CandidateBatch(
            ids=np.arange(big_n),
            embeddings=unit(big_n),
            created_at=now - rng.uniform(0, 86_400, big_n),
            access_count=rng.integers(0, 100, big_n),
            success_rate=rng.uniform(0, 1, big_n).astype(np.float32),
            metadata_overlap=np.zeros(big_n, np.float32),
        ),
    }


def logged_history(directory: Path) -> dict[str, object]:
    """For docs/learning.md: a routing log exported to `history.exports` (a biased logging
    policy with known propensities), the serving model file, and a cutoff time."""
    import tinydancer as td
    from tests.engine.history.test_learning import (
        BOUNDARY,
        SETTINGS,
        T0,
        simulate,
        write_history,
    )
    from tinydancer.history.learning import load_logged, train_from_history

    path = directory / "history.duckdb"
    write_history(path, simulate(600, seed=0), prefix="before", start=T0)
    write_history(path, simulate(600, seed=1), prefix="after", start=BOUNDARY)
    with td.HistoryStore(td.HistoryConfig(path=path)) as store:
        store.export(directory / "history.exports")
    serving, _ = train_from_history(load_logged(path, until=BOUNDARY), settings=SETTINGS, seed=1)
    td.save_model(serving, directory / "serving.safetensors")
    return {"cutoff": BOUNDARY}


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_in_process_example_runs(path: Path, tmp_path, monkeypatch):
    examples = [code for code in python_examples(path) if not needs_cluster(code)]
    assert examples, f"{path.name} has no in-process Python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs.{path.stem}", **vectors()}
    if path.name == "learning.md":
        namespace.update(logged_history(tmp_path))
    for number, code in enumerate(examples, 1):
        exec(compile(code, f"{path.name} example {number}", "exec"), namespace)


def test_the_readme_agent_mode_example_needs_only_the_public_api():
    agent_mode = next(code for code in python_examples(ROOT / "README.md") if "AgentRouter" in code)
    imports = re.findall(r"^\s*(?:from|import) .*$", agent_mode, re.M)
    assert imports == ["import tinydancer as td"]
