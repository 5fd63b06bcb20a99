"""Candidate mode: a query and N candidates in, per candidate a confidence, a conformal
uncertainty and a `use_lightweight` flag out (`Router`, its request and response types,
the features computed inside the kernel, and a plain-numpy reference scorer).

May import: `tinydancer.model`, `tinydancer.errors`, `tinydancer.runtime`, `tinydancer._ids`.
"""
