"""The speed-ups change nothing: each shortcut is checked against the real thing."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from shapecli.speedups import recurrent_shape_rules


def shapes(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.dtype
    if isinstance(value, tuple | list):
        return tuple(shapes(v) for v in value)
    return value


CASES = [
    (cls, batch_first, bidirectional, layers, proj, batched, with_hx)
    for cls, batch_first, bidirectional, layers, proj, batched, with_hx in itertools.product(
        (nn.LSTM, nn.GRU, nn.RNN), (False, True), (False, True), (1, 2), (0, 3), (True, False),
        (False, True),
    )
    if proj == 0 or cls is nn.LSTM
]  # fmt: skip


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize(
    ("cls", "batch_first", "bidirectional", "layers", "proj", "batched", "with_hx"), CASES
)
def test_recurrent_shape_rule_matches_a_real_run(
    cls: type[nn.Module], batch_first: bool, bidirectional: bool, layers: int, proj: int,
    batched: bool, with_hx: bool,
) -> None:  # fmt: skip
    kwargs = {"proj_size": proj} if proj else {}
    real = cls(
        5, 6, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional, **kwargs
    )
    with torch.device("meta"):
        meta = cls(
            5, 6, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional, **kwargs
        )
    size = (2, 7, 5) if batch_first else (7, 2, 5)
    if not batched:
        size = (7, 5)
    x = torch.randn(size)
    args: tuple[object, ...] = (x,)
    if with_hx:
        directions = 2 if bidirectional else 1
        lead = (layers * directions, 2) if batched else (layers * directions,)
        h = torch.randn(*lead, proj or 6)
        args = (x, (h, torch.randn(*lead, 6)) if cls is nn.LSTM else h)
    expected = shapes(real(*args))

    def to_meta(value: object) -> object:
        if isinstance(value, torch.Tensor):
            return value.to("meta")
        if isinstance(value, tuple):
            return tuple(to_meta(v) for v in value)
        return value

    with recurrent_shape_rules():
        got = shapes(meta(*(to_meta(a) for a in args)))
    assert got == expected


def test_bad_inputs_still_fail_as_before() -> None:
    with torch.device("meta"):
        lstm = nn.LSTM(5, 6)
    with recurrent_shape_rules(), pytest.raises(RuntimeError, match="input_size"):
        lstm(torch.empty(7, 2, 4, device="meta"))
    with recurrent_shape_rules(), pytest.raises(ValueError, match="dtype"):
        lstm(torch.empty(7, 2, 5, device="meta", dtype=torch.long))


def test_the_rule_is_scoped_and_leaves_real_tensors_alone() -> None:
    from torch.nn.modules import rnn

    real = vars(rnn)["_VF"]
    lstm = nn.LSTM(5, 6)
    with recurrent_shape_rules():
        assert vars(rnn)["_VF"] is not real
        out, _ = lstm(torch.ones(3, 1, 5))
        assert out.device.type == "cpu" and torch.isfinite(out).all() and out.abs().sum() > 0
    assert vars(rnn)["_VF"] is real


def test_lean_meta_nests_and_leaves_the_dynamo_caches_as_they_were() -> None:
    from shapecli import speedups

    wrapped = speedups._dynamo_wrapped()
    before = [getattr(f, "__dynamo_disable", None) for f in wrapped]
    with speedups.lean_meta(), speedups.lean_meta():
        pass
    assert [getattr(f, "__dynamo_disable", None) for f in wrapped] == before


def test_the_heap_is_searched_again_only_when_wrapped_functions_were_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shapecli import speedups

    searches = []
    real_search = speedups._dynamo_wrapped

    def counted() -> list[object]:
        searches.append(1)
        return real_search()

    monkeypatch.setattr(speedups, "_dynamo_wrapped", counted)
    monkeypatch.setattr(speedups, "_dynamo_loaded", lambda: False)  # as in a fresh process
    with speedups.lean_meta():
        first = len(searches)
        with speedups.lean_meta():
            pass
        assert len(searches) == first  # nothing new: no search

        def traced_by_dynamo() -> int:
            return 1

        wrapped = torch._disable_dynamo(traced_by_dynamo)
        with speedups.lean_meta():
            assert len(searches) == first + 1  # a new wrapped function: searched, and filled
            assert getattr(traced_by_dynamo, "__dynamo_disable", None) is traced_by_dynamo
            assert wrapped() == 1
    assert getattr(traced_by_dynamo, "__dynamo_disable", None) is None  # left as found


def test_meta_weights_are_not_initialized_and_real_ones_are_unchanged() -> None:
    from torch.nn import init

    from shapecli import speedups

    originals = dict(vars(init))
    flat = torch.empty(5, device="meta")  # too few dims: torch's own initializer refuses it
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.kaiming_uniform_(flat)
    torch.manual_seed(0)
    outside = nn.Linear(4, 3).weight.detach().clone()
    with speedups.lean_meta():
        assert init.kaiming_uniform_(flat) is flat  # nothing to fill, nothing run
        torch.manual_seed(0)
        inside = nn.Linear(4, 3).weight.detach().clone()
        assert nn.Linear(4, 3, device="meta").weight.is_meta
    assert torch.equal(inside, outside)  # real weights: the same bits
    assert all(vars(init)[name] is fn for name, fn in originals.items())  # torch's own again


def test_only_a_process_of_its_own_has_its_heap_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from shapecli import speedups

    assert gc.get_freeze_count() == 0
    with speedups.lean_meta():  # the API's block: the heap is the caller's
        assert gc.get_freeze_count() == 0
    monkeypatch.setattr(speedups._LEAN, "own_process", True)  # what the CLI's main() says
    try:
        with speedups.lean_meta():
            frozen = gc.get_freeze_count()
            assert frozen > 10_000  # torch's import-time objects, out of every collection
        made_since = [[] for _ in range(5_000)]  # tracked objects a second freeze would take

        def traced_by_dynamo() -> int:
            return 1

        wrapped = torch._disable_dynamo(traced_by_dynamo)  # made after the freeze
        monkeypatch.setattr(speedups, "_dynamo_loaded", lambda: False)  # a fresh process
        with speedups.lean_meta():
            assert gc.get_freeze_count() <= frozen  # once per process (some have died since)
            assert getattr(traced_by_dynamo, "__dynamo_disable", None) is traced_by_dynamo
            known = {id(fn) for fn in speedups._LEAN.wrapped}
            assert id(traced_by_dynamo) in known  # the new one, found by a search...
            assert len(known) > 100  # ...beside torch's own, which the frozen heap hides
            assert wrapped() == 1
        assert len(made_since) == 5_000
    finally:
        gc.unfreeze()
