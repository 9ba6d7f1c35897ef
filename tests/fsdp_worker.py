"""One process of the two that ``tests/test_distributed.py`` starts with ``torchrun``.

    torchrun --standalone --nproc-per-node 2 tests/fsdp_worker.py RESULT.json

Each case is a spec built on the meta device by ``shapecli.build``, sharded with torch's
FSDP2 (``fully_shard`` on each repeat copy, then at the root), given memory on the CPU
(``to_empty``) and initialized by ``shapecli.initialize``; then it trains one AdamW step
on an input of each process's own. Before them, the recipe of ``docs/distributed.md``
runs as written (it starts the process group) on ``configs/llama-tiny.yaml``, and its
model trains one step. Process 0 writes, per case, what the test checks:

* ``initialized``: the names of the tensors that differ from ``shapecli.build`` of the
  same spec in one process (the full state dict, gathered before the step), and the
  names and shapes of both state dicts;
* ``tied``: whether each tie is still one parameter after sharding, ``to_empty``,
  initializing and the step;
* ``loss`` of every process;
* ``held``: the most any process holds after the step — the bytes of its shards of the
  weights, of the gradients and of the optimizer's state (each storage once), and what
  autograd saved in its forward pass (saved-tensor hooks, each storage once, the
  gathered parameters left out: they are weights);
* ``peak``: the most bytes any process had allocated during the step (torch's profiler
  sees every allocation and free of the CPU's allocator): what it held before (its
  shards of the weights, and the buffers) and the highest its allocations reached on
  top — gathered weights, gradients, optimizer state, activations, communication;
* ``after``: the names and shapes of the full state dict after the step;
* ``outside``: the problem ``shapecli.initialize`` reports for a layer whose
  initializer sets another layer's sharded tensor (in every process alike);
* ``same_shards``: what torch's own random operations give on a sharded CPU tensor
  (every process draws the same numbers), which is why ``shapecli.initialize`` does not
  leave them to DTensor.
"""

from __future__ import annotations

import gc
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.profiler import ProfilerActivity, profile

import shapecli
from shapecli.record import tensors_in

ROOT = Path(__file__).resolve().parent.parent

#: (name, spec, input, params, the repeat group to shard block by block, ties to check)
CASES: list[tuple[str, str, str, dict[str, Any], str | None, list[tuple[str, str]]]] = [
    (
        "gpt2",
        str(ROOT / "configs/gpt2.yaml"),
        "2x16:long",
        {"vocab": 99, "d": 32, "layers": 2, "heads": 2, "context": 16},
        "h",
        [("lm_head.weight", "wte.weight")],
    ),
    (
        "llama",
        str(ROOT / "configs/llama-tiny.yaml"),
        "2x16:long",
        {"vocab": 99, "d": 32, "layers": 2, "heads": 4, "kv_heads": 2, "hidden": 72},
        "layers",
        [],
    ),
    (
        # torch's MultiheadAttention sets its out_proj's bias in its own initializer;
        # here it draws it at random (see reaching_out)
        "mha",
        "input: 2x5x16\nmodel:\n"
        "  - MultiheadAttention: {embed_dim: 16, num_heads: 2, batch_first: true}\n"
        "    in: [_, _, _]\n"
        "  - Take: 0\n"
        "  - LazyLinear: 7\n",
        "2x5x16",
        {},
        None,
        [],
    ),
]


def reaching_out() -> None:
    """Make ``MultiheadAttention``'s initializer draw its ``out_proj.bias`` at random,
    in this process only (the single-process builds compared with included): a layer
    whose initializer fills a sublayer's sharded tensor at random, which a DTensor on
    the CPU would fill with the same numbers in every process."""
    own = nn.MultiheadAttention._reset_parameters

    def reset(self: nn.MultiheadAttention) -> None:
        own(self)
        nn.init.normal_(self.out_proj.bias, std=0.02)

    nn.MultiheadAttention._reset_parameters = reset  # type: ignore[method-assign]


def main(result: Path) -> None:
    reaching_out()
    found: dict[str, Any] = {"recipe": run_recipe()}  # it starts the process group
    found.update({name: run_case(*case) for name, *case in CASES})
    found["outside"] = reaching_outside()
    found["same_shards"] = dtensor_cpu_rng_repeats_itself()
    if dist.get_rank() == 0:
        result.write_text(json.dumps(found, indent=1), encoding="utf-8")
    # Both leave together, and without tearing down: gloo's threads, destroyed while
    # the interpreter exits, now and then abort the process ("terminate called without
    # an active exception") after its work is done.
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def recipe() -> str:
    """The recipe of ``docs/distributed.md``: its Python block."""
    docs = (ROOT / "docs" / "distributed.md").read_text(encoding="utf-8")
    found = re.search(r"```python\n(.*?)```", docs, re.S)
    assert found is not None, "docs/distributed.md has no Python block"
    return found.group(1)


def run_recipe() -> dict[str, Any]:
    """Run the recipe as written, the spec on its command line ``llama-tiny.yaml``; on
    the CPU it starts gloo. Then its model is compared with a single-process build and
    trains one step with its optimizer."""
    spec = str(ROOT / "configs" / "llama-tiny.yaml")
    sys.argv = ["train.py", spec]
    space: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(recipe(), "docs/distributed.md", "exec"), space)
    model, optimizer = space["model"], space["optimizer"]
    single = shapecli.build(spec, seed=0).state_dict()
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    differ = sorted(k for k in full if k not in single or not torch.equal(full[k], single[k]))
    output = model(example(model, "1x128:long"))
    loss = sum(t.float().sum() for t in tensors_in(output))
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    optimizer.step()
    after = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {
        "sharded": all(isinstance(p, DTensor) for p in model.parameters()),
        "differ": differ,
        "same_names_and_shapes": shapes(full) == shapes(single),
        "loss": gathered([float(loss.detach())]),
        "finite": all(bool(torch.isfinite(t).all()) for t in after.values()),
    }


def reaching_outside() -> dict[str, Any]:
    """Initialize a sharded model whose second layer's initializer also sets the first
    layer's weight: a tensor outside the layer, which FSDP's contract forbids."""
    text = "input: 2x4\nmodel:\n  - Linear: [4, 4]\n  - Linear: [4, 4]\n"
    model = shapecli.build(spec_of(text), device="meta")
    first, second = model[0], model[1]
    second.reset_parameters = lambda: nn.init.zeros_(first.weight)
    for layer in (first, second, model):
        fully_shard(layer)
    model.to_empty(device="cpu")
    try:
        shapecli.initialize(model)
    except shapecli.ShapecliError as error:
        problem = error.problem
        line = problem.source.line if problem.source is not None else None
        return {"code": problem.code, "message": problem.message, "line": line}
    return {"code": None}


def spec_of(spec: str) -> Any:
    """A spec from a path, or from its text."""
    if "\n" not in spec:
        return spec
    from shapecli.spec.parse import parse_spec

    return parse_spec(spec, "spec.yaml")


def run_case(
    spec: str,
    shape: str,
    params: dict[str, Any],
    blocks: str | None,
    ties: list[tuple[str, str]],
) -> dict[str, Any]:
    loaded = spec_of(spec)
    options: dict[str, Any] = {"input": shape, "set": params or None, "init": "normal"}
    model = shapecli.build(loaded, device="meta", **options)
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    for block in model.get_submodule(blocks) if blocks is not None else ():
        fully_shard(block)
    fully_shard(model)
    model.to_empty(device="cpu")
    shapecli.initialize(model, seed=0)

    single = shapecli.build(loaded, seed=0, **options).state_dict()
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    differ = sorted(k for k in full if k not in single or not torch.equal(full[k], single[k]))

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = local_bytes(model.parameters()) + local_bytes(model.buffers())
    gc.collect()  # the earlier cases' models, freed now rather than during the step
    gc.disable()
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiled:
            inputs = [example(model, shape)]
            saved, outputs = saved_in_forward(model, inputs)
            loss = sum(t.float().sum() for t in outputs)
            assert isinstance(loss, torch.Tensor)
            loss.backward()
            optimizer.step()
    finally:
        gc.enable()

    held = {
        "weights": local_bytes(model.parameters()),
        "gradients": local_bytes(p.grad for p in model.parameters() if p.grad is not None),
        "optimizer_state": local_bytes(
            v for state in optimizer.state.values() for v in state.values()
        ),
        "saved_for_backward": saved,
    }
    after = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return {
        "initialized": {
            "differ": differ,
            "sharded": shapes(full),
            "single": shapes(single),
        },
        "tied": [model.get_parameter(a) is model.get_parameter(b) for a, b in ties],
        "loss": gathered([float(loss.detach())]),
        "held": {k: max(gathered([v])) for k, v in held.items()},
        "peak": max(gathered([before + highest(profiled)])),
        "after": shapes(after),
        "finite": all(bool(torch.isfinite(t).all()) for t in after.values()),
    }


def example(model: nn.Module, shape: str) -> torch.Tensor:
    """Each process's own input: token ids below the embedding's rows, or floats."""
    from shapecli.inputs import parse_input

    spec = parse_input(shape)
    dims = tuple(int(d) for d in spec.dims)
    generator = torch.Generator().manual_seed(1000 + dist.get_rank())
    if spec.dtype == "int64":
        rows = min(m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding))
        return torch.randint(0, rows, dims, generator=generator)
    return torch.randn(dims, generator=generator)


def saved_in_forward(
    model: nn.Module, inputs: list[torch.Tensor]
) -> tuple[int, list[torch.Tensor]]:
    """Bytes autograd saves in one train-mode forward pass, each storage once; the
    parameters FSDP gathered for the layer that computes are left out (they are
    weights, freed after the layer, gathered again for its backward)."""
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        parameters = {storage(p) for p in model.parameters()}
        if storage(tensor) not in parameters:
            saved[storage(tensor)] = tensor.untyped_storage().nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        output = model(*inputs)
    return sum(saved.values()), [t for t in tensors_in(output) if t.is_floating_point()]


def highest(profiled: profile) -> int:
    """The most bytes allocated at once on top of what was allocated before the
    profiler started: its allocations and frees (``[memory]`` events), in time order."""
    events = profiled.profiler.kineto_results.events()  # type: ignore[union-attr]
    changes = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    running = most = 0
    for _, change in changes:
        running += change
        most = max(most, running)
    return most


def storage(tensor: torch.Tensor) -> int:
    local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
    return int(local.untyped_storage().data_ptr())


def local_bytes(tensors: Any) -> int:
    """Bytes of the storages this process holds for ``tensors`` (its shard of a
    DTensor), each storage once."""
    held: dict[int, int] = {}
    for tensor in tensors:
        if isinstance(tensor, torch.Tensor):
            local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
            held[storage(local)] = local.untyped_storage().nbytes()
    return sum(held.values())


def shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in state.items()}


def gathered(values: list[float]) -> list[float]:
    """``values`` of every process, in rank order."""
    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, values)
    return [v for part in every for v in part]


def dtensor_cpu_rng_repeats_itself() -> bool:
    """Whether torch's random fill of a sharded CPU tensor gives every process the same
    numbers (each draws its shard from the start of its own generator)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    tensor = distribute_tensor(torch.zeros(8, 4), mesh, [Shard(0)])
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "DTensor random operators may not have complete support"
        nn.init.normal_(tensor)
    shards = gathered(tensor.to_local().flatten().tolist())
    half = len(shards) // 2
    return shards[:half] == shards[half:]


if __name__ == "__main__":
    main(Path(sys.argv[1]))
