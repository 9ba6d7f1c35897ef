"""Python models for tests: the shipped MLP written in plain PyTorch, and variants."""

from torch import nn


def mlp() -> nn.Module:
    """configs/mlp.yaml, layer for layer."""
    return nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))


def wider() -> nn.Module:
    """The MLP with a wider hidden layer: every layer changes."""
    return nn.Sequential(nn.Linear(20, 512), nn.ReLU(), nn.Linear(512, 10))


class Named(nn.Module):
    """The MLP with its own names (fc1, act, fc2) instead of indices."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 256)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc2(self.act(self.fc1(x)))


class Deeper(Named):
    """Named, with one more layer at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(10, 3)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.out(super().forward(x))


def broken() -> nn.Module:
    raise RuntimeError("no GPU found")


def not_a_module() -> int:
    return 3


class Reused(nn.Module):
    """Two ReLUs that are one module, and a flatten that is a function: neither is a
    layer of the module tree a second time."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 256)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(256, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):  # type: ignore[no-untyped-def]
        import torch

        return self.fc3(torch.flatten(self.act(self.fc2(self.act(self.fc1(x)))), 1))


class Block(nn.Module):
    """A residual block written as torchvision writes them: an in-place add of the
    block's input, then one activation."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(20, 20)
        self.act = nn.ReLU()

    def forward(self, x):  # type: ignore[no-untyped-def]
        out = self.fc(x)
        out += x
        return self.act(out)


def residual() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 20), Block(), nn.Linear(20, 10))


class Positions(nn.Module):
    """A parameter on the model itself, not on a layer (as position tables often are)."""

    rows = 1

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch_zeros(self.rows, 20))
        self.fc = nn.Linear(20, 10)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fc(x + self.pos)


class MorePositions(Positions):
    rows = 8


def torch_zeros(*size: int):  # type: ignore[no-untyped-def]
    import torch

    return torch.zeros(*size)


class Looped(nn.Module):
    """Layers in a ModuleList, called in a loop: the list itself never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(20, 16)
        self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(2))
        self.head = nn.Linear(16, 10)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class TiedHead(nn.Module):
    """An output layer tied to the token embedding (GPT-2's ``lm_head``)."""

    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(100, 16)
        self.up = nn.Linear(16, 100, bias=False)
        self.down = nn.Linear(100, 16, bias=False)
        self.lm_head = nn.Linear(16, 100, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.lm_head(self.down(self.up(self.wte(x))))


class Twice(nn.Module):
    """One block (with weights) run twice, as a weight-shared network does."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(16, 16), nn.ReLU())
        self.head = nn.Linear(16, 4)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.head(self.block(self.block(x)))


class Spare(nn.Module):
    """The MLP with its activation as a function, and a ReLU and Dropout it never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 256)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):  # type: ignore[no-untyped-def]
        import torch

        return self.fc2(torch.relu(self.fc1(x)))
