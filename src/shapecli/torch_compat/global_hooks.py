"""A global forward hook removed whole: torch's handle forgets its ``with_kwargs`` flag.

``register_module_forward_hook(hook, with_kwargs=True)`` records the hook in
``_global_forward_hooks`` and a flag in ``_global_forward_hooks_with_kwargs``, but the
handle it returns removes the hook and not the flag. The stale flag is harmless to
calls, yet ``torch.compile`` takes it for a global hook still installed and warns about
it — in the user's process, long after shapecli's dry run. :func:`remove` removes the
hook through its handle, then the flag.

Off (see :data:`TOUCHPOINT`), only the handle's own removal runs: the flag stays, as
it does with torch alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shapecli.torch_compat import Releases, Touchpoint

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle


def remove(handle: RemovableHandle) -> None:
    """Remove the global forward hook of ``handle``, its ``with_kwargs`` flag included."""
    handle.remove()
    if TOUCHPOINT.active():
        _flags().pop(handle.id, None)


def _flags() -> dict[int, bool]:
    from torch.nn.modules import module

    flags: dict[int, bool] = module._global_forward_hooks_with_kwargs
    return flags


def _self_check() -> bool:
    """The flag is where torch writes it, under the handle's id, and goes with it."""
    from torch.nn.modules.module import register_module_forward_hook

    handle = register_module_forward_hook(
        lambda module, args, kwargs, output: None, with_kwargs=True
    )
    written = _flags().get(handle.id) is True
    handle.remove()
    _flags().pop(handle.id, None)
    return written and handle.id not in _flags()


TOUCHPOINT = Touchpoint(
    reaches="torch.nn.modules.module._global_forward_hooks_with_kwargs",
    tested=Releases((2, 6), (2, 14)),
    self_check=_self_check,
)
