"""Learning from the routing history: loading the log, weighted retraining, off-policy
value, promotion, and the CLI paths, on a synthetic world whose truth is known.

The world: requests on two topics (readable from the embedding) and a hidden
difficulty (not in the embedding) that lowers every agent's quality. The logging policy
knows the difficulty and is deliberately biased: it sends easy requests to the cheap
agent and hard ones to the premium agent, and logs its true propensities. A model
trained on the log without weights thinks the cheap agent better and the premium agent
worse than they are; inverse-propensity weights remove that.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tinydancer.cli import main
from tinydancer.errors import HistoryError, ModelFileError
from tinydancer.history.learning import (
    compare,
    greedy_policy,
    load_logged,
    off_policy_value,
    promote,
    train_from_history,
)
from tinydancer.history.records import DecisionColumns, OutcomeColumns, quantize_embeddings
from tinydancer.history.store import HistoryConfig, HistoryStore
from tinydancer.model.weights import RouterModel, load_model, save_model
from tinydancer.training.agent import predict_quality
from tinydancer.training.fit import FitSettings

AGENTS = ("cheap", "mid", "premium")
COST_USD = np.array([0.0005, 0.002, 0.01])
QUALITY = np.array([[0.45, 0.9], [0.7, 0.75], [0.9, 0.95]])  # (agent, topic): easy requests
HARD_DROP = np.array([0.4, 0.2, 0.1])  # quality lost on a hard request, per agent
LOGGING = np.array([[0.8, 0.1, 0.1], [0.1, 0.3, 0.6]])  # (hard, agent): the logging policy
WILLINGNESS_TO_PAY = (0.02, 0.1)
T0 = 1_700_000_000.0
BOUNDARY = T0 + 100_000.0  # training window before, evaluation window after
SETTINGS = FitSettings(  # small and quick: the world is simple
    learning_rate=1e-2,
    weight_decay=1e-2,
    batch_size=256,
    max_epochs=40,
    patience=5,
    sparsity=0.3,
    retrain_epochs=5,
)


@dataclass(frozen=True)
class World:
    x: np.ndarray  # (n, 384) request embeddings
    topic: np.ndarray  # (n,) 0 / 1, readable from x
    hard: np.ndarray  # (n,) 0 / 1, hidden
    chosen: np.ndarray  # (n,) logged agent index
    propensity: np.ndarray  # (n,)
    success: np.ndarray  # (n,) bool
    cost_usd: np.ndarray  # (n,)
    willingness_to_pay: np.ndarray  # (n,) NaN = not given


def simulate(n: int, seed: int, agents: int = 3) -> World:
    rng = np.random.default_rng(seed)
    topic, hard = rng.integers(0, 2, n), rng.integers(0, 2, n)
    x = rng.normal(size=(n, 384)).astype(np.float32) / np.sqrt(384)
    x[:, 0] += 0.6 * (2 * topic - 1)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    policy = LOGGING[hard]
    if agents > 3:  # a newcomer takes 20 % of the traffic
        policy = np.concatenate([0.8 * policy, np.full((n, 1), 0.2)], axis=1)
    chosen = np.array([rng.choice(agents, p=p) for p in policy])
    propensity = policy[np.arange(n), chosen]
    quality = QUALITY[chosen % 3, topic] - HARD_DROP[chosen % 3] * hard
    wtp = np.where(rng.random(n) < 0.3, np.nan, rng.choice(WILLINGNESS_TO_PAY, n))
    cost = COST_USD[chosen % 3] * rng.uniform(0.9, 1.1, n)
    return World(x, topic, hard, chosen, propensity, rng.random(n) < quality, cost, wtp)


def expected_quality(topic: np.ndarray) -> np.ndarray:
    """(n, A) true quality given what the embedding shows (the difficulty averaged out)."""
    return QUALITY[:, topic].T - 0.5 * HARD_DROP[None, :]


def write_history(
    path: Path, world: World, *, prefix: str, start: float, outcomes: bool = True
) -> list[str]:
    """Decisions (and, unless told not to, 95 % of their outcomes) through HistoryStore."""
    n = len(world.chosen)
    names = [*AGENTS, "newcomer"]
    ids = [f"{prefix}-{i}" for i in range(n)]
    codes, scales = quantize_embeddings(world.x)
    decisions = DecisionColumns()
    for i in range(n):
        wtp = world.willingness_to_pay[i]
        for column, value in (
            ("request_id", ids[i]),
            ("ts", start + i),
            ("mode", "agent"),
            ("embedding", codes[i]),
            ("embedding_scale", float(scales[i])),
            ("message_count", 1),
            ("chosen", names[world.chosen[i]]),
            ("confidence", 0.5),
            ("uncertainty", 0.1),
            ("propensity", float(world.propensity[i])),
            ("model_quality", None),
            ("expected_quality", None),
            ("estimated_cost_usd", float(COST_USD[world.chosen[i] % 3])),
            ("estimated_latency_ms", None),
            ("alternatives", "[]"),
            ("optimize_for", "balanced"),
            ("willingness_to_pay", None if np.isnan(wtp) else float(wtp)),
            ("constraints", None),
            ("model_version", "agent-logging"),
            ("inference_time_us", 10.0),
            ("replica", None),
        ):
            getattr(decisions, column).append(value)
    feedback = OutcomeColumns()
    rng = np.random.default_rng(len(prefix))
    for i in range(n):
        if outcomes and rng.random() < 0.95:
            quality = None if rng.random() < 0.2 else float(world.success[i])  # success only
            feedback.add(
                ids[i],
                names[world.chosen[i]],
                bool(world.success[i]),
                500.0,
                quality,
                float(world.cost_usd[i]),
                start + i + 1,
            )
    with HistoryStore(HistoryConfig(path=path)) as store:
        store.append_decisions(decisions)
        store.append_outcomes(feedback)
    return ids


def world_rows(logged, prefix: str) -> np.ndarray:
    return np.array([int(r.removeprefix(prefix + "-")) for r in logged.request_ids])


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """One history file: a training window and, after BOUNDARY, an evaluation window."""
    root = tmp_path_factory.mktemp("history")
    path = root / "history.duckdb"
    worlds = {"train": simulate(3000, seed=0), "eval": simulate(3000, seed=1)}
    write_history(path, worlds["train"], prefix="train", start=T0)
    write_history(path, worlds["eval"], prefix="eval", start=BOUNDARY)
    with HistoryStore(HistoryConfig(path=path)) as store:
        store.export(root / "exports")
    return path, root / "exports", worlds


@pytest.fixture(scope="module")
def models(history):
    path, _, _ = history
    logged = load_logged(path, until=BOUNDARY)
    weighted, report = train_from_history(logged, settings=SETTINGS)
    unweighted, _ = train_from_history(logged, settings=SETTINGS, max_weight=1.0)
    return weighted, unweighted, report


def swapped_heads(model: RouterModel) -> RouterModel:
    """A worse model: each agent's head predicts another agent's quality."""
    order = np.array([2, 0, 1])
    stored = dict(model.stored)
    for name in ("head.weight.q", "head.weight.scale", "head.bias"):
        stored[name] = stored[name][order]
    return RouterModel(
        model.mode, model.config, stored, model.feature_schema, model.calibration, "", model.info
    )


@pytest.fixture(scope="module")
def model_files(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    weighted, _, _ = models
    good = save_model(weighted, root / "good.safetensors")
    bad = save_model(swapped_heads(weighted), root / "bad.safetensors")
    return good, bad


def test_load_logged_keeps_the_first_outcome_of_the_chosen_agent(history, tmp_path):
    path, _, worlds = history
    logged = load_logged(path, until=BOUNDARY)
    world = worlds["train"]
    rows = world_rows(logged, "train")
    assert logged.rows["decisions"] == 3000
    assert logged.rows["with_outcome"] == len(logged) == 3000 - logged.rows["without_outcome"]
    assert 0.9 < len(logged) / 3000 < 0.99
    assert logged.agents == list(AGENTS)
    np.testing.assert_array_equal(logged.chosen, world.chosen[rows])
    np.testing.assert_array_equal(logged.quality, world.success[rows].astype(float))
    np.testing.assert_allclose(logged.propensity, world.propensity[rows], rtol=1e-6)
    np.testing.assert_allclose(logged.embeddings, world.x[rows], atol=0.01)
    np.testing.assert_allclose(logged.ts, T0 + rows)
    assert logged.window == ("2023-11-14T22:13:20+00:00", logged.window[1])

    # A repeated outcome, one for another agent, and a zero propensity are left out.
    single = tmp_path / "single.duckdb"
    write_history(single, simulate(3, seed=5), prefix="x", start=T0)
    with HistoryStore(HistoryConfig(path=single)) as store:
        answered, agent = store.query("SELECT request_id, agent FROM outcomes LIMIT 1")[0]
        columns = DecisionColumns()
        columns.extend(_decision_like(store, answered, "y-0", propensity=0.0))
        columns.extend(_decision_like(store, answered, "y-1", propensity=0.5))
        store.append_decisions(columns)
        repeat = OutcomeColumns()
        repeat.add(answered, agent, False, quality=0.123, ts=T0 + 9)
        repeat.add("y-0", agent, True, quality=1.0, ts=T0 + 9)
        repeat.add("y-1", "somebody-else", True, quality=1.0, ts=T0 + 9)
        store.append_outcomes(repeat)
    small = load_logged(single)
    assert small.rows["invalid_propensity"] == 1 and small.rows["outcome_for_other_agent"] == 1
    assert 0.123 not in small.quality.tolist()


def _decision_like(
    store: HistoryStore, request_id: str, new_id: str, *, propensity: float
) -> DecisionColumns:
    """A copy of a stored decision under a new id, with another propensity."""
    row = store.query(
        "SELECT embedding, embedding_scale, chosen FROM decisions WHERE request_id = ?",
        [request_id],
    )[0]
    columns = DecisionColumns(
        request_id=[new_id], ts=[T0 + 5], mode=["agent"],
        embedding=[np.frombuffer(row[0], np.int8)], embedding_scale=[row[1]],
        message_count=[1], chosen=[row[2]], confidence=[0.5], uncertainty=[0.1],
        propensity=[propensity], model_quality=[None], expected_quality=[None],
        estimated_cost_usd=[0.001], estimated_latency_ms=[None], alternatives=["[]"],
        optimize_for=[None], willingness_to_pay=[0.1], constraints=[None],
        model_version=["agent-logging"], inference_time_us=[1.0], replica=[None],
    )  # fmt: skip
    return columns


def test_an_export_directory_reads_the_same_log(history):
    path, exports, _ = history
    from_file, from_export = load_logged(path), load_logged(exports)
    assert from_export.request_ids == from_file.request_ids
    assert from_export.rows == from_file.rows
    np.testing.assert_array_equal(from_export.embeddings, from_file.embeddings)
    np.testing.assert_array_equal(from_export.willingness_to_pay, from_file.willingness_to_pay)


@pytest.mark.slow
def test_inverse_propensity_weights_remove_the_logging_bias(models):
    weighted, unweighted, _ = models
    fresh = simulate(4000, seed=7)
    truth = expected_quality(fresh.topic).mean(axis=0)  # (A,)
    bias = {
        name: predict_quality(model.float_params(), fresh.x).mean(axis=0) - truth
        for name, model in (("weighted", weighted), ("unweighted", unweighted))
    }
    # Without weights: the cheap agent (logged on easy requests) looks better than it is,
    # the premium agent (logged on hard ones) worse.
    assert bias["unweighted"][0] > 0.08 and bias["unweighted"][2] < 0
    assert np.abs(bias["weighted"]).max() < 0.04
    assert np.abs(bias["weighted"]).sum() < 0.5 * np.abs(bias["unweighted"]).sum()


@pytest.mark.slow
def test_lineage_records_the_data_window_rows_parent_and_weighting(history, models, tmp_path):
    path, _, _ = history
    weighted, _, report = models
    lineage = load_model(save_model(weighted, tmp_path / "m.safetensors")).info["lineage"]
    assert lineage == {
        "data": str(path),
        "window": ["2023-11-14T22:13:20+00:00", lineage["window"][1]],
        "rows": {
            "decisions": 3000,
            "with_outcome": report["rows"]["with_outcome"],
            "training": report["prompts"]["fit"],
        },
        "parent_model": None,
        "weighting": "inverse propensity, clipped at 20, self-normalised",
    }
    assert lineage["window"][1] < "2023-11-15T01"  # the evaluation window was not read
    assert set(weighted.info["willingness_to_pay"]) == {"0.8", "0.9", "0.95", "1.0"}


@pytest.mark.slow
def test_ips_and_dr_cover_the_true_value_of_the_models_greedy_policy(history, models):
    path, _, worlds = history
    weighted, _, _ = models
    logged = load_logged(path, since=BOUNDARY)  # traffic the model was not trained on
    rows = world_rows(logged, "eval")
    value = off_policy_value(logged, weighted, seed=3)

    choice = np.array([AGENTS.index(a) for a in greedy_policy(logged, weighted)])
    quality = expected_quality(worlds["eval"].topic[rows])  # (n, A)
    wtp = np.where(
        np.isnan(logged.willingness_to_pay),
        weighted.info["willingness_to_pay"]["0.95"],
        logged.willingness_to_pay,
    )
    picked = quality[np.arange(len(rows)), choice]
    truth = {"quality": picked.mean(), "utility": (picked - COST_USD[choice] / wtp).mean()}
    easy = QUALITY[:, worlds["eval"].topic[rows]].T  # (n, A)
    logging_truth = 0.5 * ((LOGGING[0] * easy).sum(1) + (LOGGING[1] * (easy - HARD_DROP)).sum(1))
    for estimator in ("ips", "dr"):
        for reward, true_value in truth.items():
            interval = value[estimator][reward]
            assert interval["low_95"] <= true_value <= interval["high_95"], (estimator, reward)
    logged_quality = value["logging_policy"]["quality"]
    assert logged_quality["low_95"] <= logging_truth.mean() <= logged_quality["high_95"]
    for reward in ("quality", "cost_usd", "utility"):
        width = {e: value[e][reward]["high_95"] - value[e][reward]["low_95"] for e in ("ips", "dr")}
        assert width["dr"] < width["ips"], reward
    assert 0 < value["effective_sample_size"] < len(logged)
    assert value["training_window_overlap"] == 0.0
    assert value["bootstrap"] == {"rounds": 1000, "seed": 3}
    assert truth["utility"] > value["logging_policy"]["utility"]["high_95"]  # it learned
    # On its own training traffic the estimate is flagged.
    on_training = off_policy_value(load_logged(path, until=BOUNDARY), weighted, rounds=50)
    assert on_training["training_window_overlap"] == 1.0


@pytest.mark.slow
def test_compare_gives_a_paired_interval_of_the_difference(history, models):
    path, _, _ = history
    weighted, _, _ = models
    logged = load_logged(path, since=BOUNDARY)
    result = compare(logged, weighted, swapped_heads(weighted), rounds=300)
    gap = result["difference"]["dr_utility"]
    candidate, serving = result["candidate"]["dr"]["utility"], result["serving"]["dr"]["utility"]
    assert gap["estimate"] == pytest.approx(candidate["estimate"] - serving["estimate"])
    assert gap["low_95"] > 0 and gap["share_positive"] == 1.0
    # Paired: narrower than the two models' own intervals side by side.
    assert gap["high_95"] - gap["low_95"] < candidate["high_95"] - serving["low_95"]


@pytest.mark.slow
def test_promote_refuses_a_worse_model_accepts_a_better_one_and_replaces_atomically(
    history, model_files, tmp_path
):
    path, _, _ = history
    good, bad = model_files
    logged = load_logged(path, since=BOUNDARY)
    live = tmp_path / "live.safetensors"
    shutil.copyfile(good, live)
    refused = promote(logged, bad, good, to=live, rounds=200)
    assert not refused.promoted and refused.written_to is None
    assert "refused" in refused.message and "DR utility" in refused.message
    assert live.read_bytes() == good.read_bytes()

    forced = promote(logged, bad, good, to=live, force=True, rounds=200)
    assert forced.promoted and forced.forced and live.read_bytes() == bad.read_bytes()

    better = promote(logged, good, bad, to=live, rounds=200)
    assert better.promoted and not better.forced and better.written_to == str(live)
    assert load_model(live).version == load_model(good).version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.safetensors"]  # no temp left

    decided = promote(logged, good, bad, rounds=50)  # decide only (the cluster's reload)
    assert decided.promoted and decided.written_to is None


@pytest.mark.slow
def test_cli_trains_from_history_with_a_parent_and_a_new_agent(
    history, model_files, tmp_path, capsys
):
    good, _ = model_files
    small = tmp_path / "small.duckdb"
    write_history(small, simulate(500, seed=9, agents=4), prefix="s", start=BOUNDARY + 1e6)
    child = tmp_path / "child.safetensors"
    code = main(
        ["train", "--history", str(small), "--model", str(good), "--out", str(child), "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    model = load_model(child)
    assert model.feature_schema["agents"] == [*AGENTS, "newcomer"]
    assert model.info["lineage"]["parent_model"] == load_model(good).version
    assert report["lineage"]["rows"]["decisions"] == 500
    assert report["version"] == model.version
    assert model.info["agent_mean_cost_usd"]["newcomer"] == pytest.approx(COST_USD[0], rel=0.1)


@pytest.mark.slow
def test_cli_eval_and_promote_on_a_history(history, model_files, tmp_path, capsys):
    path, exports, _ = history
    good, bad = model_files
    since = ["--since", str(BOUNDARY)]
    assert main(["eval", "--history", str(exports), *since, "--model", str(good), "--json"]) == 0
    value = json.loads(capsys.readouterr().out)
    assert {"ips", "dr", "logging_policy", "effective_sample_size"} <= set(value)
    assert (
        main(["eval", "--history", str(path), *since, "--model", str(good), "--serving", str(bad)])
        == 0
    )
    text = capsys.readouterr().out
    assert "DR utility difference (candidate - serving): +" in text

    live = tmp_path / "live.safetensors"
    shutil.copyfile(good, live)
    promote_args = ["promote", "--history", str(path), *since, "--to", str(live)]
    refuse = [*promote_args, "--candidate", str(bad), "--serving", str(good), "--bootstrap", "200"]
    assert main(refuse) == 3
    err = capsys.readouterr().err
    assert "refused" in err and "DR utility" in err and "[" in err
    assert live.read_bytes() == good.read_bytes()
    assert main([*refuse, "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["forced"] is True
    assert load_model(live).version == load_model(bad).version
    accept = [*promote_args, "--candidate", str(good), "--serving", str(bad), "--bootstrap", "200"]
    assert main(accept) == 0
    assert f"to {live}" in capsys.readouterr().out
    assert load_model(live).version == load_model(good).version


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    missing = tmp_path / "missing.duckdb"
    with pytest.raises(HistoryError, match="no such history file"):
        load_logged(missing)
    assert main(["train", "--history", str(missing), "--out", str(tmp_path / "m.st")]) == 2
    assert "no such history file" in capsys.readouterr().err

    silent = tmp_path / "silent.duckdb"
    write_history(silent, simulate(20, seed=2), prefix="q", start=T0, outcomes=False)
    with pytest.raises(HistoryError, match="20 agent-mode decisions but none has an outcome"):
        load_logged(silent)
    with pytest.raises(HistoryError, match="no agent-mode decisions between"):
        load_logged(silent, since=T0 + 1e6)
    assert main(["eval", "--history", str(silent), "--model", str(tmp_path / "x")]) == 2
    assert "none has an outcome" in capsys.readouterr().err

    (tmp_path / "not-an-export").mkdir()
    with pytest.raises(HistoryError, match="not a history export"):
        load_logged(tmp_path / "not-an-export")
    assert main(["train", "--data", str(tmp_path), "--model", "p", "--out", "o"]) == 2
    assert "--model (a parent model) applies to --history" in capsys.readouterr().err


def test_a_candidate_for_another_embedding_is_refused_even_with_force(history, models):
    path, _, _ = history
    weighted, _, _ = models
    other = RouterModel(
        weighted.mode,
        weighted.config,
        weighted.stored,
        {**weighted.feature_schema, "embedding": {"model": "another-encoder", "dim": 384}},
        weighted.calibration,
    )
    with pytest.raises(ModelFileError, match="embedding model differs"):
        promote(load_logged(path), other, weighted, force=True)
