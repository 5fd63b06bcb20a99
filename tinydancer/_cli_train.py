"""`tinydancer train`: fit a model, write safetensors, print a summary."""

from __future__ import annotations

import argparse
import json

from tinydancer.weights import save_model

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    if args.synthetic_candidates:
        from tinydancer.training.candidate import train_candidate_model

        model, report = train_candidate_model(seed=args.seed, n_queries=args.queries)
    else:  # pragma: no cover - argparse requires one source
        raise SystemExit("choose a training source")
    path = save_model(model, args.out)
    report = {"out": str(path), **report}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(
            f"wrote {path} (version {model.version}, {model.size_bytes} bytes of weights, "
            f"sparsity {model.sparsity:.2f})"
        )
        for key in (
            "test_auc",
            "test_auc_heuristic",
            "test_brier",
            "int8_vs_float32_max_abs_diff",
            "conformal_test_coverage",
        ):
            if key in report:
                print(f"  {key}: {report[key]:.4f}")
    return 0
