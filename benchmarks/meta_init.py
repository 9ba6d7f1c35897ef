"""What leaving meta weights uninitialized would save: torch's ``nn.init`` on meta tensors.

    python benchmarks/meta_init.py [--runs N] [--files N] [--write FILE]

Every layer fills its weights when it is made, and on the meta device ``nn.init``'s
random-number kernels run for tensors that hold no values. shapecli could skip them by
replacing ``torch.nn.init``'s functions while a dry run runs: patching a namespace of
torch's, which a program calling the API shares. This measures whether that would pay:
each command runs as shapecli does it, and again with every in-place initializer of
``torch.nn.init`` made to return a meta tensor untouched (the most a patch could save),
round-robin. The claim is the ratio of the two CPU times: per spec (``inspect``) and per
dry run (``lint --jobs 1`` over many small specs, where startup is paid once).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import harness

SPECS = ("mlp.yaml", "lenet5.yaml", "llama-tiny.yaml")
#: The CLI, with torch.nn.init's initializers leaving meta tensors alone.
SKIPPING = (
    "import sys, functools\n"
    "from torch.nn import init\n"
    "def skipping(fn):\n"
    "    @functools.wraps(fn)\n"
    "    def initialize(tensor, *args, **kwargs):\n"
    "        return tensor if tensor.is_meta else fn(tensor, *args, **kwargs)\n"
    "    return initialize\n"
    "for name, fn in list(vars(init).items()):\n"
    "    if name.endswith('_') and not name.startswith('_') and callable(fn):\n"
    "        setattr(init, name, skipping(fn))\n"
    "from shapecli.cli import main\n"
    "sys.argv[0] = 'shapecli'\n"
    "main()\n"
)


def main() -> None:
    parser = harness.parser(__doc__, runs=5)
    parser.add_argument("--files", type=harness.positive, default=300)
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        harness.spec_copies(folder, SPECS, args.files)
        runs = {
            "inspect configs/gpt2.yaml": ["inspect", "configs/gpt2.yaml"],
            "inspect configs/resnet50.yaml": ["inspect", "configs/resnet50.yaml"],
            f"lint --jobs 1, {args.files} small specs": ["lint", "--jobs", "1", str(folder)],
        }
        commands: dict[str, list[str]] = {}
        for label, argv in runs.items():
            commands[label] = [python, "-m", "shapecli", *argv]
            commands[f"  {label}, nn.init skipped on meta"] = [python, "-c", SKIPPING, *argv]
        results = harness.round_robin(commands, args.runs)
    rows = []
    for label in runs:
        own, skipped = results[label], results[f"  {label}, nn.init skipped on meta"]
        if not (own.ok and skipped.ok):
            failed = own if not own.ok else skipped
            print(f"{label}: {failed.problem}: {failed.reason}")
            rows.append([f"`shapecli {label}`", failed.problem or "not run", "", "", ""])
            continue
        ratio = skipped.cpu / own.cpu
        print(f"{label:45s} CPU {own.cpu:6.2f} s, skipped {skipped.cpu:6.2f} s = {ratio:.3f}×")
        rows.append(
            [
                f"`shapecli {label}`",
                harness.secs(own.cpu),
                harness.secs(skipped.cpu),
                harness.times(ratio),
                harness.secs(own.wall),
            ]
        )
    header = [
        f"run (median of {args.runs}, round-robin)",
        "CPU",
        "CPU, init skipped",
        "ratio",
        "wall",
    ]
    body = (
        harness.table(header, rows, right=(1, 2, 3, 4))
        + f"\n\nThe lint folder holds {args.files} copies of "
        + ", ".join(SPECS)
        + " in turn. A ratio of 0.95× would mean skipping nn.init saves 5 % of the CPU time."
    )
    harness.write_section(args.write, "nn.init on meta tensors", body)
    sys.exit(harness.exit_status(results))


if __name__ == "__main__":
    main()
