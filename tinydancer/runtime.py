"""Process-level settings for the JAX hot path. Nothing here runs at import time.

Two facts about JAX on small CPU machines shape the hot path (see the README,
"Performance"):

* JAX's asynchronous dispatch hands every call to a worker thread; for a call that
  takes ~20 µs that hand-off costs more than the work. `use_sync_dispatch()` turns it
  off. Routers call it when they are built (``RouterConfig.sync_dispatch``, default on),
  not at import.
* XLA's CPU runtime splits even small operations across all cores the process may run
  on. On a 2-core VM the hand-off between cores costs tens of µs per op, so a process
  that serves small requests is faster pinned to one core. `pin_to_core()` must run
  before JAX creates its CPU client (in practice: before the first JAX computation); it
  is an explicit opt-in of a process (a replica, the CLI, a benchmark run), never a
  side effect of ``import tinydancer``.

A serving replica pins itself to ``replica_rank % cpu_count`` so that two replicas on
a 2-core node each own one core; large batch scoring runs unpinned and uses both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from tinydancer.errors import ConfigError

__all__ = [
    "compilation_cache_dir",
    "jax_backend_started",
    "pin_to_core",
    "pinned_core",
    "use_compilation_cache",
    "use_sync_dispatch",
]


def jax_backend_started() -> bool:
    """True once JAX has created its backends (after that, pinning no longer helps)."""
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    if xla_bridge is None:
        return False
    backends = getattr(xla_bridge, "_backends", None)
    return bool(backends)


def pin_to_core(core: int) -> None:
    """Restrict this process to one CPU core, before JAX starts its CPU backend.

    Raises ConfigError if the core does not exist or the JAX backend already runs
    (XLA sized its thread pool from the affinity mask it saw at start).
    """
    available = sorted(os.sched_getaffinity(0))
    count = os.cpu_count() or 1
    if core < 0 or core >= count:
        raise ConfigError(
            f"pin_to_core: core {core} does not exist; valid cores are 0..{count - 1}"
        )
    if jax_backend_started():
        raise ConfigError(
            "pin_to_core: the JAX CPU backend is already running; pin before the first "
            "JAX computation (for example at the top of the process entry point)"
        )
    if core not in available and len(available) == 1:
        raise ConfigError(f"pin_to_core: process is already restricted to cores {available}")
    os.sched_setaffinity(0, {core})


def pinned_core() -> int | None:
    """The core this process is pinned to, or None if it may run on several."""
    cores = os.sched_getaffinity(0)
    return next(iter(cores)) if len(cores) == 1 else None


def use_sync_dispatch() -> None:
    """Make jitted calls run on the calling thread (removes ~40-70 µs per small call)."""
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)


def compilation_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where compiled XLA programs persist between processes: ~/.cache/tinydancer/jax
    (or $XDG_CACHE_HOME/tinydancer/jax)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "tinydancer" / "jax"


def use_compilation_cache(environ: Mapping[str, str] | None = None) -> None:
    """Turn on JAX's persistent compilation cache in `compilation_cache_dir()`, unless the
    process already chose a directory. A process-wide setting: the text encoder calls it
    when built, and a serving replica calls it before it builds anything, so every model's
    shapes compile once per machine, not once per start."""
    import jax

    if not getattr(jax.config, "jax_compilation_cache_dir", None):
        jax.config.update("jax_compilation_cache_dir", str(compilation_cache_dir(environ)))
        # JAX keeps only programs that took >= 1 s to compile; the routers' kernels take
        # 0.1-0.8 s each, a dozen shapes per model, and were compiled anew at every start.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
