"""Process-level JAX settings (tinydancer.runtime), each checked in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, os, jax
from tinydancer.runtime import compilation_cache_dir, use_compilation_cache
if os.environ.get("PRESET"):
    jax.config.update("jax_compilation_cache_dir", os.environ["PRESET"])
use_compilation_cache()
jax.jit(lambda x: x * 2 + 1)(jax.numpy.ones(3)).block_until_ready()
print(json.dumps({
    "dir": jax.config.jax_compilation_cache_dir,
    "expected": str(compilation_cache_dir()),
    "min_s": jax.config.jax_persistent_cache_min_compile_time_secs,
}))
"""


def run(tmp_path, **env) -> dict:
    environment = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", **env}
    out = subprocess.run(
        [sys.executable, "-c", CHECK], env=environment, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_compilation_cache_keeps_every_program_in_the_user_cache(tmp_path):
    got = run(tmp_path, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert got["dir"] == got["expected"] == str(tmp_path / "xdg" / "tinydancer" / "jax")
    assert got["min_s"] == 0.0  # small programs too: the routers' kernels compile in < 1 s
    written = list((tmp_path / "xdg" / "tinydancer" / "jax").iterdir())
    assert written, "the tiny program above was not written to the cache"


def test_a_directory_the_process_chose_is_kept(tmp_path):
    got = run(tmp_path, PRESET=str(tmp_path / "chosen"))
    assert got["dir"] == str(tmp_path / "chosen")
    assert got["min_s"] == 1.0  # JAX's default: the process's own choices are left alone
