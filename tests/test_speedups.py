"""The speed-ups change nothing: each shortcut is checked against the real thing."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from shapecli.speedups import recurrent_shape_rules
from shapecli.torch_compat import dynamo_cache

pytestmark = pytest.mark.compat  # checked on the oldest and newest supported torch too


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


@pytest.mark.slow
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


@pytest.mark.parametrize(
    "bad",
    [torch.empty(7, 2, 4, device="meta"), torch.empty(7, 2, 5, device="meta", dtype=torch.long)],
    ids=["input size", "dtype"],
)
def test_bad_inputs_still_fail_as_before(bad: torch.Tensor) -> None:
    with torch.device("meta"):
        lstm = nn.LSTM(5, 6)
    with pytest.raises((RuntimeError, ValueError)) as torchs_own:
        lstm(bad)
    with (
        recurrent_shape_rules(),
        pytest.raises(torchs_own.type, match=re.escape(str(torchs_own.value))),
    ):
        lstm(bad)


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

    wrapped = dynamo_cache.wrapped_functions()
    before = [getattr(f, "__dynamo_disable", None) for f in wrapped]
    with speedups.lean_meta(), speedups.lean_meta():
        pass
    assert [getattr(f, "__dynamo_disable", None) for f in wrapped] == before


def test_the_heap_is_searched_again_only_when_wrapped_functions_were_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shapecli import speedups

    searches = []
    real_search = dynamo_cache.wrapped_functions

    def counted() -> list[object]:
        searches.append(1)
        return real_search()

    monkeypatch.setattr(dynamo_cache, "wrapped_functions", counted)
    monkeypatch.setattr(dynamo_cache, "dynamo_loaded", lambda: False)  # as in a fresh process
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


def test_only_a_process_of_its_own_has_its_heap_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from shapecli import speedups

    assert gc.get_freeze_count() == 0
    torchs_own = {id(fn) for fn in dynamo_cache.wrapped_functions()}  # an unfrozen heap's
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
        monkeypatch.setattr(dynamo_cache, "dynamo_loaded", lambda: False)  # a fresh process
        monkeypatch.setattr(dynamo_cache.STATE, "references_seen", -1)  # whatever came before
        with speedups.lean_meta():
            assert gc.get_freeze_count() <= frozen  # once per process (some have died since)
            assert getattr(traced_by_dynamo, "__dynamo_disable", None) is traced_by_dynamo
            known = {id(fn) for fn in dynamo_cache.STATE.wrapped}
            assert id(traced_by_dynamo) in known  # the new one, found by a search...
            assert torchs_own <= known  # ...beside torch's own, which the frozen heap hides
            assert wrapped() == 1
        assert len(made_since) == 5_000
    finally:
        gc.unfreeze()


def test_the_heap_is_asked_whether_it_is_frozen_once_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``gc.get_freeze_count`` walks every frozen object (tens of ms after torch): a
    symbolic inspection opens a block per checking run, and must not pay it each time."""
    import gc

    from shapecli import speedups

    asked = []

    def freeze_count() -> int:
        asked.append(1)
        return 1  # frozen already: nothing is frozen by this test

    monkeypatch.setattr(gc, "get_freeze_count", freeze_count)
    monkeypatch.setattr(speedups._LEAN, "own_process", True)
    monkeypatch.setattr(speedups._LEAN, "frozen", False)
    for _ in range(3):
        with speedups.lean_meta():
            pass
    assert len(asked) == 1


def test_a_warning_torch_gives_once_per_process_is_given_for_every_spec(tmp_path: Path) -> None:
    import shapecli

    spec = tmp_path / "same.yaml"
    spec.write_text(
        "input: 1x3x16x16\n"
        "model:\n  - Conv2d: {in_channels: 3, out_channels: 4, kernel_size: 4, padding: same}\n"
    )
    for _ in range(2):  # TORCH_WARN_ONCE: the second would have said nothing
        (warning,) = shapecli.inspect(spec).warnings
        assert warning.code == "layer-warning" and "padding='same'" in warning.message
    assert not torch.is_warn_always_enabled()  # as it was, after the block


def test_blocks_in_several_threads_keep_torch_changed_while_any_is_open() -> None:
    import threading

    from shapecli import speedups

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with speedups.lean_meta():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with speedups.lean_meta():
            second_in.set()
            first_out.wait(10)  # the block that opened first has closed: this one is open
            seen.append(torch.is_warn_always_enabled())

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen == [True]  # still changed for the block still open
    assert not torch.is_warn_always_enabled() and speedups._LEAN.depth == 0  # then undone
