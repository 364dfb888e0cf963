"""pose3dfr.resources: the child processes that parse untrusted files run this checkout's code, single-threaded, under
the limits they set themselves, and freed memory can be handed back to the system."""

from __future__ import annotations

import subprocess
import sys

from pose3dfr.resources import child_command, child_env, trim_memory


def test_a_child_runs_one_function_of_this_checkout_and_exits_with_its_value():
    """child_command runs `module.function(argv)` of this checkout in a fresh interpreter and exits with its value,
    with the parent's environment and single-threaded numeric libraries (child_env)."""
    env = child_env()
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    helped = subprocess.run(child_command("pose3dfr.cli", "main") + ["--help"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0 and "eval-photos" in helped.stdout  # this checkout's CLI, given the argv
    refused = subprocess.run(child_command("pose3dfr.cli", "main") + ["no-such-command"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "invalid choice" in refused.stderr


def test_a_child_that_limits_itself_cannot_allocate_past_the_limit():
    """limit_own_resources caps the address space: a 512 MiB allocation fails in a child capped at 256 MiB, and the
    parent gets an exit status, not a crash."""
    code = ("import sys; from pose3dfr.resources import limit_own_resources\n"
            "limit_own_resources(256 * 2**20, 10, 2**20)\n"
            "try:\n    bytearray(512 * 2**20)\nexcept MemoryError:\n    sys.exit(7)\nsys.exit(0)")
    run = subprocess.run([sys.executable, "-c", code], env=child_env(), timeout=60)
    assert run.returncode == 7


def test_trim_memory_hands_free_pages_back_on_glibc():
    """On glibc (this project's Debian machines) malloc_trim exists and runs; elsewhere the call says it did nothing."""
    import platform

    result = trim_memory()
    assert result is (platform.libc_ver()[0] == "glibc")
    assert trim_memory() is result  # the library is looked up once
