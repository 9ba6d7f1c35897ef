"""The CLI as a real process: what it imports, how it exits, what it prints to pipes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONFIGS, ROOT, run_process


def imported_modules(*args: str) -> set[str]:
    """Top-level-ish module names a ``python -m shapecli ARGS`` run imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "shapecli", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}


@pytest.mark.process
def test_import_shapecli_does_not_import_torch() -> None:
    code = "import sys, shapecli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_help_and_schema_do_not_import_torch() -> None:
    modules = imported_modules("--help")
    assert "typer" in modules and "torch" not in modules
    assert "torch" not in imported_modules("schema")


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize(
    "text", ["model:\n  - a: 1\n   - b\n", "modle: []\n", "model:\n  - LazyLinear: ${nope}\n"]
)
def test_yaml_and_spec_errors_do_not_import_torch(tmp_path: Path, text: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    assert "torch" not in imported_modules("inspect", str(spec), "--input", "2x3")
    done = run_process("inspect", str(spec), "--input", "2x3")
    assert done.returncode == 1 and done.stdout == "" and "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.process
def test_lint_of_broken_yaml_never_imports_torch(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.yaml").write_text("model:\n  - a: 1\n   - b\n")
    assert "torch" not in imported_modules("lint", str(tmp_path))
    done = run_process("lint", str(tmp_path))
    assert done.returncode == 1 and "3 files checked, 3 errors, 0 warnings" in done.stdout


@pytest.mark.slow
@pytest.mark.process
def test_inspect_as_a_process() -> None:
    done = run_process("inspect", "configs/mlp.yaml", "--input", "2x20")
    assert done.returncode == 0, done.stderr
    assert "Total params: 7,946" in done.stdout and done.stderr == ""
    assert "\x1b[" not in done.stdout  # no colour when not a terminal


@pytest.mark.process
def test_missing_file_exits_2_without_traceback() -> None:
    done = run_process("inspect", "/nonexistent.yaml")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "/nonexistent.yaml: error[file-error] no such file" in done.stderr


@pytest.mark.slow
@pytest.mark.process
def test_closed_pipe_ends_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "shapecli", "inspect", str(CONFIGS / "mlp.yaml"), "-f", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(1) == b"{"
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) == 0
    assert "Traceback" not in stderr and "Broken pipe" not in stderr


@pytest.mark.slow
@pytest.mark.process
def test_the_current_directory_is_not_importable(tmp_path: Path) -> None:
    (tmp_path / "yaml.py").write_text("raise SystemExit('shadowed')\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("input: 1x2\nmodel: [ReLU]\n")
    done = run_process("inspect", str(spec), cwd=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.process
def test_a_user_package_on_pythonpath(tmp_path: Path) -> None:
    """The way a user brings their own layer: PYTHONPATH and --allow-import."""
    (tmp_path / "mylayers.py").write_text(
        "import torch\nclass Double(torch.nn.Module):\n"
        "    def forward(self, x):\n        return torch.cat([x, x], -1)\n"
    )
    spec = tmp_path / "s.yaml"
    spec.write_text("input: 1x2\nmodel: [mylayers.Double]\n")
    env = {"PYTHONPATH": str(tmp_path)}
    done = run_process("inspect", str(spec), "--allow-import", "mylayers", env=env)
    assert done.returncode == 0 and "1×4" in done.stdout, done.stderr
    refused = run_process("inspect", str(spec), env=env)
    assert refused.returncode == 1 and "--allow-import mylayers" in refused.stderr


SPEEDUP_CHECK = """
import json, sys
import torch
from shapecli import api, report, speedups
from shapecli.construct import build_modules
from shapecli.dryrun import dry_run
fast = sys.argv[1] == "fast"
docs = []
for path in sys.argv[2:]:
    spec = api.load(path)
    with speedups.lean_meta() if fast else speedups.contextlib.nullcontext():
        built = build_modules(spec)
    result = dry_run(built, spec.inputs, spec.name, spec.file, replay=fast, shortcuts=fast)
    docs.append(report.to_json(result))
print(json.dumps(["torch._dynamo" in sys.modules, docs]))
speedups.exit_now(7)
"""


@pytest.mark.slow
@pytest.mark.process
def test_the_speedups_keep_dynamo_out_and_change_nothing() -> None:
    """In a fresh process: no dynamo import with them, and the whole report of every
    config the same with and without them."""
    configs = [str(CONFIGS / f"{name}.yaml") for name in ("mlp", "resnet18", "gpt2", "mismatch")]

    def run(mode: str) -> list[object]:
        done = subprocess.run(
            [sys.executable, "-c", SPEEDUP_CHECK, mode, *configs],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 7, done.stderr  # exit_now keeps the exit code
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    fast, plain = run("fast"), run("plain")
    assert fast[0] is False and plain[0] is True  # dynamo imported only without them
    assert fast[1] == plain[1]


@pytest.mark.slow
@pytest.mark.process
def test_the_api_leaves_dynamo_as_it_found_it() -> None:
    code = (
        "import shapecli, sys, torch\n"
        "shapecli.inspect(sys.argv[1])\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "from torch._refs import add\n"  # a reference kernel behind _disable_dynamo
        "from shapecli.torch_compat import dynamo_cache\n"
        "assert all(getattr(f, '__dynamo_disable', None) is None for f in dynamo_cache.wrapped_functions())\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(CONFIGS / "mlp.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.stdout.strip() == "ok", done.stderr


def run_on_terminal(*args: str, env: dict[str, str]) -> str:
    """Run the CLI with stdout on a pseudo-terminal; return what it wrote there."""
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "shapecli", *args],
                stdout=follower, stderr=subprocess.PIPE, cwd=ROOT, timeout=120, check=False,
                env={**{k: v for k, v in os.environ.items() if k != "NO_COLOR"}, "COLUMNS": "200", **env},
            )  # fmt: skip
        finally:
            os.close(follower)
        assert done.returncode == 0, done.stderr
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(leader)


@pytest.mark.slow
def test_colour_on_a_terminal_unless_no_color() -> None:
    coloured = run_on_terminal("inspect", "configs/mlp.yaml", env={})
    assert "\x1b[" in coloured and "7,946" in coloured
    plain = run_on_terminal("inspect", "configs/mlp.yaml", env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain and "7,946" in plain


@pytest.mark.slow
@pytest.mark.process
def test_lint_workers_end_with_the_process_that_forked_them(tmp_path: Path) -> None:
    import shutil
    import signal
    import time

    for i in range(300):  # enough work that lint is still running when it is stopped
        shutil.copy(CONFIGS / "llama-tiny.yaml", tmp_path / f"{i:03d}.yaml")
    lint = subprocess.Popen(
        [sys.executable, "-m", "shapecli", "lint", str(tmp_path), "--jobs", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    children = Path(f"/proc/{lint.pid}/task/{lint.pid}/children")
    deadline = time.monotonic() + 120
    try:
        while len(workers := children.read_text().split()) < 2:
            assert lint.poll() is None, "lint ended before both workers were seen"
            assert time.monotonic() < deadline, "lint never started its workers"
            time.sleep(0.02)
        lint.send_signal(signal.SIGTERM)  # the parent alone, as `kill` or a CI runner does
        lint.communicate(timeout=60)  # returns once every holder of the pipes is gone
    finally:
        lint.kill()  # whatever happened above, nothing is left running
        lint.communicate()

    def ended(pid: str) -> bool:  # dead, if perhaps not yet reaped (a zombie)
        status = Path(f"/proc/{pid}/status")
        with contextlib.suppress(FileNotFoundError):
            return status.read_text().split("State:")[1].split()[0] in ("Z", "X")
        return True

    while not all(ended(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers outlived lint: {workers}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.process
def test_lint_workers_do_not_use_a_thread_pool_started_before_the_fork() -> None:
    # The parent's CPU thread pool is running when the workers are forked; in a worker
    # it does not exist, and an op that would use it hangs unless torch uses one thread.
    script = (
        "import torch, sys; from pathlib import Path; from shapecli import lint\n"
        "torch.ones(512, 512) @ torch.ones(512, 512)\n"
        "real = lint.check_file\n"
        "def check(path, **options):\n"
        "    torch.ones(512, 512) @ torch.ones(512, 512)\n"
        "    return real(path, **options)\n"
        "lint.check_file = check\n"
        "names = ['mlp', 'partial', 'lenet5', 'mismatch', 'llama-tiny', 'alexnet']\n"
        "result = lint.lint([f'configs/{n}.yaml' for n in names], jobs=2)\n"
        "print(result.errors)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a full disk)")
@pytest.mark.parametrize("command", [["inspect", "configs/mlp.yaml"], ["layers"]])
def test_a_full_disk_is_a_clear_error_not_a_traceback(command: list[str]) -> None:
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "shapecli", *command],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "shapecli: error[file-error] could not write the output: No space left on device\n"
    )
