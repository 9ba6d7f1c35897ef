"""A build that is stopped while it writes leaves nothing behind — stopped by Ctrl-C
(SIGINT), ``kill`` or a CI runner's cancel (SIGTERM), or a closed terminal (SIGHUP).

Real processes, real signals: the model's own ``state_dict`` hook (a user layer, allowed
with ``--allow-import``) signals the process while the weights file is being written,
which is the moment a temporary file exists.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

LAYER = """
import os, signal, time
import torch

class Stops(torch.nn.Module):
    '''A layer that has its process signalled when its weights are saved.'''

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(4))
        self._register_state_dict_hook(self.stop)

    def reset_parameters(self):
        torch.nn.init.ones_(self.weight)

    @staticmethod
    def stop(module, state, prefix, metadata):
        os.kill(os.getpid(), getattr(signal, os.environ["STOP_WITH"]))
        time.sleep(30)  # the signal ends the process (or the write) long before this

    def forward(self, x):
        return x * self.weight
"""
WRITER = """
import os, signal, sys, time
from pathlib import Path
from shapecli.atomic import atomic_file

with atomic_file(Path(sys.argv[1])) as temp:
    temp.write_bytes(b"half a file")
    os.kill(os.getpid(), getattr(signal, os.environ["STOP_WITH"]))
    time.sleep(30)
"""
SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"]


def ended_by(name: str, code: int) -> bool:
    """Whether exit ``code`` is the process ending because of signal ``name``."""
    number = int(getattr(signal, name))
    return code in (-number, 128 + number) or (name == "SIGINT" and code == 130)


@pytest.mark.process
@pytest.mark.parametrize("name", SIGNALS)
def test_a_signalled_write_leaves_no_temporary_file(tmp_path: Path, name: str) -> None:
    target = tmp_path / "out.bin"
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(target)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "STOP_WITH": name},
    )  # fmt: skip
    assert ended_by(name, done.returncode), (done.returncode, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.process
@pytest.mark.parametrize("name", SIGNALS)
def test_a_signalled_build_leaves_no_temporary_file(tmp_path: Path, name: str) -> None:
    (tmp_path / "stopping.py").write_text(LAYER)
    spec = tmp_path / "model.yaml"
    spec.write_text("input: 2x4\nmodel:\n  - stopping.Stops\n")
    out = tmp_path / "out"
    out.mkdir()
    path = [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    done = subprocess.run(
        [sys.executable, "-m", "shapecli", "build", str(spec), "-o", str(out / "w.safetensors"),
         "--allow-import", "stopping"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
        env={**os.environ, "STOP_WITH": name, "PYTHONPATH": os.pathsep.join(path)},
    )  # fmt: skip
    assert ended_by(name, done.returncode), (done.returncode, done.stderr)
    assert list(out.iterdir()) == [], "nothing may be left where the weights were going"
    assert "Traceback" not in done.stderr
