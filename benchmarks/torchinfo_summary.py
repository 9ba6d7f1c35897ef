"""torchinfo's summary of a plain-PyTorch network, as its users run it.

    python benchmarks/torchinfo_summary.py {mlp,resnet18,gpt2} SHAPE[:DTYPE]

The model is built on the CPU with real, initialized weights and ``torchinfo.summary``
runs a real forward pass on a generated input of that shape (``1x1024:long`` for
token ids): that is what a torchinfo user pays, so ``compare.py`` times exactly this.
"""

from __future__ import annotations

import argparse

import torch
import torchinfo

import plain_models

DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "int64": torch.int64,
    "long": torch.int64,
}


def parse_input(text: str) -> tuple[list[int], torch.dtype]:
    """``1x1024:long`` → ``([1, 1024], torch.int64)``: the input syntax of shapecli."""
    shape, _, dtype = text.partition(":")
    return [int(size) for size in shape.split("x")], DTYPES[dtype or "float32"]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("model", choices=sorted(plain_models.BUILDERS))
    parser.add_argument("input", help="e.g. 2x20 or 1x1024:long")
    args = parser.parse_args()
    size, dtype = parse_input(args.input)
    model = plain_models.build(args.model)
    torchinfo.summary(model, input_size=size, dtypes=[dtype])


if __name__ == "__main__":
    main()
