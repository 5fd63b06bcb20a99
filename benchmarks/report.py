"""Turn pytest-benchmark JSON files into the README's markdown table.

    python benchmarks/report.py .bench/pinned.json .bench/unpinned.json

Absolute figures are pytest-benchmark medians; the ratios come from the interleaved
measurements each benchmark stores in `extra_info` (see `_compare.py`).
"""

from __future__ import annotations

import json
import sys


def _time(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs" if seconds < 1e-2 else f"{seconds * 1e3:,.2f} ms"


def rows(path: str) -> list[str]:
    with open(path) as handle:
        data = json.load(handle)
    label = data["machine_info"].get("tinydancer_pinning", path)
    out = []
    for bench in sorted(data["benchmarks"], key=lambda b: (b["group"] or "", b["name"])):
        info = bench.get("extra_info", {})
        median = bench["stats"]["median"]
        case = bench["group"] + (
            "" if "[" not in bench["name"] else f" ({bench['name'].split('[')[1][:-1]})"
        )
        if "rows" in info:
            out.append(
                f"| {label} | {case} | {_time(median)} ({info['rows'] / median / 1e6:,.1f} M rows/s) | | | | |"
            )
            continue
        if "ratio_to.numpy_reference" not in info:
            out.append(f"| {label} | {case} | {_time(median)} | | | | |")
            continue
        ref = info["interleaved_median_s.numpy_reference"]
        floor = info["interleaved_median_s.stream_floor"]
        out.append(
            f"| {label} | {case} | {_time(median)} | {_time(ref)} | {info['ratio_to.numpy_reference']:.2f} "
            f"| {_time(floor)} | {info['ratio_to.stream_floor']:.2f} |"
        )
    return out


def main(paths: list[str]) -> None:
    print(
        "| process | case | Tiny Dancer median | numpy reference | ratio | stream floor `E.sum()` | ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for path in paths:
        print("\n".join(rows(path)))


if __name__ == "__main__":
    main(sys.argv[1:])
