"""`tinydancer replay`: stream a split through a router that learns, revealing only the
outcome of the agent it chose (online evaluation)."""

from __future__ import annotations

import argparse
import json

from tinydancer.cli import Command

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(replay: argparse.ArgumentParser) -> None:
    replay.add_argument("--data", required=True, help="split directory to stream")
    replay.add_argument("--model", required=True, help="agent-mode model file")
    replay.add_argument(
        "--drift", help="agent whose quality drops to 0 half-way ('auto' = the busiest)"
    )
    replay.add_argument("--passes", type=int, default=1, help="stream the split this many times")
    replay.add_argument(
        "--willingness-to-pay", type=float, help="USD per unit of quality (default: calibrated)"
    )
    replay.add_argument("--seed", type=int, default=0)
    replay.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from tinydancer.datasets import load_split
    from tinydancer.evaluation.online import replay
    from tinydancer.model.weights import load_model

    model = load_model(args.model, expect_mode="agent")
    data = load_split(args.data)
    drift = args.drift
    if drift == "auto":
        warm = replay(model, data, willingness_to_pay=args.willingness_to_pay, seed=args.seed)
        drift = next(iter(warm["traffic_share"]))
    report = replay(
        model,
        data,
        willingness_to_pay=args.willingness_to_pay,
        drift_agent=drift,
        seed=args.seed,
        passes=args.passes,
    )
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


COMMAND = Command(
    "replay", "online evaluation: stream a split, reveal only chosen outcomes", add_arguments, run
)
