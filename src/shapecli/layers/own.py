"""shapecli's own layers: the small set that turns a list of torch.nn layers into real
architectures. Each is an ordinary ``nn.Module`` with a typed ``__init__``, so the
same signature checks apply to them as to ``torch.nn`` classes.
"""

from __future__ import annotations

from torch import nn


class Sequential(nn.Sequential):
    """A layer list, in order. Children are named by the spec (default: their index)."""


OWN_MODULES: dict[str, type[nn.Module]] = {
    "Sequential": Sequential,
}
