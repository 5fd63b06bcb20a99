"""`tinydancer eval`: a model and the baselines on a test split (`--history`: see `promote`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tinydancer.cli import Command, add_window_arguments
from tinydancer.errors import ConfigError

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(evaluate: argparse.ArgumentParser) -> None:
    evaluated_on = evaluate.add_mutually_exclusive_group(required=True)
    evaluated_on.add_argument("--data", help="test split directory")
    evaluated_on.add_argument(
        "--history", help="off-policy estimates on a DuckDB history file or its Parquet export"
    )
    evaluate.add_argument("--model", required=True, help="agent-mode model file")
    evaluate.add_argument("--serving", help="with --history: compare against this serving model")
    add_window_arguments(evaluate)
    evaluate.add_argument("--train", help="training split (enables the kNN and logistic baselines)")
    evaluate.add_argument("--json", action="store_true", help="print exactly the documented JSON")
    evaluate.add_argument("--plot", help="write the cost-quality curves to this PNG")
    evaluate.add_argument(
        "--bootstrap", type=int, default=1000, help="paired-bootstrap rounds (0 = none)"
    )
    evaluate.add_argument("--bootstrap-json", help="write the bootstrap intervals to this file")
    evaluate.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "history", None):
        from tinydancer.cli import promote

        return promote.run_eval_from_history(args)
    if getattr(args, "serving", None):
        raise ConfigError("--serving applies to --history evaluation only")
    from tinydancer.datasets import load_split
    from tinydancer.evaluation.offline import evaluate
    from tinydancer.model.weights import load_model

    model = load_model(args.model, expect_mode="agent")
    test = load_split(args.data)
    train = load_split(args.train) if args.train else None
    evaluation = evaluate(model, test, train, bootstrap=args.bootstrap, seed=args.seed)
    if args.bootstrap_json:
        Path(args.bootstrap_json).write_text(
            json.dumps(
                {
                    "aiq_difference_router_minus": evaluation.bootstrap,
                    "details": evaluation.details,
                },
                indent=2,
            )
        )
    if args.plot:
        _plot(evaluation.result, args.plot)
    if args.json:
        print(json.dumps(evaluation.result))
        return 0
    result = evaluation.result
    rows = [("router", result["router"])] + [
        (k, v) for k, v in result["baselines"].items() if k != "single"
    ]
    print(
        f"{'method':14s} {'AIQ':>7s} {'APGR':>7s} {'best q':>7s}  cost to reach 50/80/95/100 % of the best agent"
    )
    for name, m in rows:
        reach = " ".join("—" if v is None else f"{v:.2e}" for v in m["cost_to_reach"].values())
        print(f"{name:14s} {m['aiq']:7.4f} {m['apgr']:7.4f} {m['best_quality']:7.3f}  {reach}")
    if evaluation.bootstrap:
        print(
            f"paired bootstrap ({evaluation.bootstrap['rounds']} rounds), AIQ(router) - AIQ(baseline), 95 % interval:"
        )
        for name, interval in evaluation.bootstrap.items():
            if isinstance(interval, dict):
                print(
                    f"  {name:12s} {interval['mean']:+.4f} [{interval['low_95']:+.4f}, {interval['high_95']:+.4f}]"
                    f"  P(>0) = {interval['share_positive']:.2f}"
                )
    return 0


def _plot(result: dict[str, Any], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib ships with the dev extra
        raise SystemExit(f"--plot needs matplotlib ({exc})") from None
    from tinydancer.evaluation.curves import hull

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, metrics in [("router", result["router"])] + [
        (k, v) for k, v in result["baselines"].items() if k not in ("single", "random")
    ]:
        vertices = hull(metrics["curve"])
        axis.plot(
            vertices[:, 0],
            vertices[:, 1],
            marker="." if name != "router" else "o",
            label=f"{name} (AIQ {metrics['aiq']:.3f})",
        )
    for agent, metrics in result["baselines"]["single"].items():
        cost, quality = metrics["curve"][0]
        axis.scatter([cost], [quality], s=12, color="grey")
        axis.annotate(agent.split("/")[-1], (cost, quality), fontsize=6)
    axis.set_xlabel("mean cost per prompt (USD)")
    axis.set_ylabel("mean quality")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


COMMAND = Command(
    "eval", "evaluate an agent model and baselines on a test split", add_arguments, run
)
