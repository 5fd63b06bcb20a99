"""`tinydancer train`: fit a model, write safetensors, print a summary."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tinydancer.cli import Command, add_window_arguments
from tinydancer.errors import ConfigError
from tinydancer.model.weights import RouterModel, save_model

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(train: argparse.ArgumentParser) -> None:
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        action="append",
        help="agent mode: a routing-outcomes split directory (repeat to train on several: "
        "their agents are the union, equal prompt ids in different splits are distinct)",
    )
    source.add_argument(
        "--synthetic-candidates",
        action="store_true",
        help="candidate mode, on the documented synthetic generator",
    )
    source.add_argument(
        "--history",
        help="agent mode: retrain on a DuckDB history file or its Parquet export directory",
    )
    train.add_argument("--model", help="parent model to start from (with --history)")
    add_window_arguments(train)
    train.add_argument("--out", required=True, help="output .safetensors file")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--queries", type=int, default=3000, help="synthetic queries (candidate mode)"
    )
    train.add_argument("--json", action="store_true", help="print the training summary as JSON")


def _agent_model(args: argparse.Namespace) -> tuple[RouterModel, dict[str, Any]]:
    from pathlib import Path

    from tinydancer.datasets import combine_splits, load_split
    from tinydancer.evaluation.offline import calibrate_knob
    from tinydancer.training.agent import split_indices
    from tinydancer.training.linear import train_linear_agent_model

    seen: dict[Path, str] = {}
    for directory in args.data:
        resolved = Path(directory).resolve()
        if resolved in seen:
            raise ConfigError(
                f"--data {directory!r} is the same directory as --data {seen[resolved]!r}; "
                "give each split directory once"
            )
        seen[resolved] = directory
    data = combine_splits([load_split(directory) for directory in args.data])
    model, report = train_linear_agent_model(data, seed=args.seed)
    # The heads are fitted on every prompt; the knob is set on a 15 % slice of them.
    _, _, calibration_rows = split_indices(len(data), args.seed)
    report["willingness_to_pay"] = calibrate_knob(model, data.take(calibration_rows))
    return model.with_info(willingness_to_pay=report["willingness_to_pay"]), report


def run(args: argparse.Namespace) -> int:
    if getattr(args, "history", None):
        from tinydancer.cli import promote

        return promote.run_train_from_history(args)
    if getattr(args, "model", None):
        raise ConfigError("--model (a parent model) applies to --history training only")
    if args.data:
        model, report = _agent_model(args)
    else:
        from tinydancer.training.candidate import train_candidate_model

        model, report = train_candidate_model(seed=args.seed, n_queries=args.queries)
    path = save_model(model, args.out)
    report = {"out": str(path), **report, "version": model.version}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(
        f"wrote {path} (version {model.version}, {model.size_bytes} bytes of weights, "
        f"sparsity {model.sparsity:.2f})"
    )
    for key in (
        "test_auc",
        "test_auc_heuristic",
        "test_brier",
        "validation_brier",
        "int8_vs_float32_max_abs_diff",
        "conformal_test_coverage",
    ):
        if key in report:
            print(f"  {key}: {report[key]:.4f}")
    if "willingness_to_pay" in report:
        print(
            f"  willingness to pay (USD per unit quality) to reach a share of the best agent: "
            f"{report['willingness_to_pay']}"
        )
    return 0


COMMAND = Command("train", "train a model and write it as safetensors", add_arguments, run)
