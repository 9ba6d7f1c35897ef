"""The body of ``torch._dynamo`` deferred during symbolic sizes, in the CLI's process
(:mod:`shapecli.torch_compat.dynamo_deferred`): the same report, without the compiler's
import, and the whole package for whatever reads more afterwards. Each case runs in a
fresh process: the deferral lasts for the life of one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import CONFIGS
from shapecli.torch_compat import shape_env

SCRIPT = """
import sys
from shapecli import speedups
from shapecli.cli import run_cli
from shapecli.torch_compat import dynamo_deferred

if sys.argv[1] == "own":
    speedups.own_the_process()  # what the CLI's main() says
code = run_cli(["inspect", sys.argv[2], "-i", "Bx3xHxW", "-f", "json"])
import torch

print("code", code, file=sys.stderr)
print("body after the run", dynamo_deferred.body_loaded(), file=sys.stderr)
print("inductor", "torch._inductor" in sys.modules, file=sys.stderr)
# outside the block a submodule's name runs the body first: the body binds its own
context = torch._dynamo.code_context
module = sys.modules["torch._dynamo.code_context"]
print("body after a read", dynamo_deferred.body_loaded(), context is not module, file=sys.stderr)
print("compiler there", callable(torch._dynamo.disable), file=sys.stderr)
"""


def _run(mode: str) -> tuple[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(CONFIGS / "resnet18.yaml")],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return done.stdout, done.stderr.splitlines()[-5:]


@pytest.mark.slow
@pytest.mark.compat
@pytest.mark.process
@pytest.mark.skipif(
    not shape_env.TOUCHPOINT.active(), reason="symbolic sizes need a torch shape_env was tested on"
)
def test_the_cli_s_symbolic_run_defers_dynamo_and_reports_the_same() -> None:
    own, own_notes = _run("own")
    api, api_notes = _run("api")
    assert own == api and '"constraints": []' in own  # derived, and the same report
    assert own_notes == [
        "code 0",
        "body after the run False",  # fake tensors and the ShapeEnv without the compiler
        "inductor False",  # nor a stack symbolized for a trace nobody writes
        "body after a read True True",
        "compiler there True",
    ]
    assert api_notes[:2] == ["code 0", "body after the run True"]  # the caller's process


def test_only_a_trace_handler_that_would_write_nothing_is_removed() -> None:
    from torch._logging import _internal

    from shapecli.torch_compat.shape_env import idle_trace_handler_removed

    writes = _internal.LazyTraceHandler("/tmp/a-trace-folder")  # TORCH_TRACE was set
    idle = _internal.LazyTraceHandler(None)
    before = list(_internal.trace_log.handlers)
    _internal.trace_log.addHandler(writes)
    _internal.trace_log.addHandler(idle)
    try:
        idle_trace_handler_removed()
        assert writes in _internal.trace_log.handlers
        assert idle not in _internal.trace_log.handlers
    finally:
        for handler in list(_internal.trace_log.handlers):
            if handler not in before:
                _internal.trace_log.removeHandler(handler)
        for handler in before:
            if handler not in _internal.trace_log.handlers:
                _internal.trace_log.addHandler(handler)
