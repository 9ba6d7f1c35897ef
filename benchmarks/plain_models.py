"""The networks of ``compare.py``, written the way a PyTorch user writes them.

torchinfo needs a real ``nn.Module``, so each shipped config that ``compare.py`` uses
has its plain-PyTorch twin here, with the same parameter count: the MLP of
``configs/mlp.yaml``, torchvision's ``resnet18`` (torchvision itself is not a
dependency; this is the same architecture, layer for layer, including its weight
initialization, so building it costs what building torchvision's does) and GPT-2 small
with the LM head tied to the token embedding.

    python benchmarks/plain_models.py     # check every parameter count, on meta
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PARAMS = {"mlp": 7_946, "resnet18": 11_689_512, "gpt2": 124_439_808}
"""Each parameter once; torchinfo counts GPT-2's tied head twice."""


def mlp() -> nn.Module:
    """20 → 256 → 10, the network of ``configs/mlp.yaml``."""
    return nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions and a shortcut: a strided 1×1 convolution where the block
    halves the resolution and doubles the channels, else the identity."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


class ResNet18(nn.Module):
    """torchvision's ``resnet18``: the same modules under the same names, 11,689,512
    parameters."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for module in self.modules():  # the initialization torchvision applies
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        logits: torch.Tensor = self.fc(torch.flatten(self.avgpool(x), 1))
        return logits


class CausalSelfAttention(nn.Module):
    """GPT-2's attention: one projection to q, k and v, causal attention, one out."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (
            part.view(b, t, self.heads, d // self.heads).transpose(1, 2)
            for part in self.c_attn(x).split(d, dim=2)
        )
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        merged: torch.Tensor = self.c_proj(out.transpose(1, 2).reshape(b, t, d))
        return merged


class GPT2Block(nn.Module):
    """Pre-norm: attention and a 4× GELU feed-forward, each in a residual."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d), nn.Dropout(0.1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        result: torch.Tensor = x + self.mlp(self.ln_2(x))
        return result


class GPT2(nn.Module):
    """GPT-2 small: 124,439,808 parameters, the LM head's weight *is* ``wte.weight``."""

    def __init__(
        self, vocab: int = 50257, context: int = 1024, d: int = 768, layers: int = 12
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(context, d)
        self.drop = nn.Dropout(0.1)
        self.h = nn.ModuleList(GPT2Block(d, heads=d // 64) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.drop(self.wte(tokens) + self.wpe(positions))
        for block in self.h:
            x = block(x)
        logits: torch.Tensor = self.lm_head(self.ln_f(x))
        return logits


BUILDERS = {"mlp": mlp, "resnet18": ResNet18, "gpt2": GPT2}


def build(name: str) -> nn.Module:
    return BUILDERS[name]()


def main() -> None:
    """Build each network on meta (nothing allocated) and check its parameter count."""
    with torch.device("meta"):
        for name, expected in PARAMS.items():
            found = sum(p.numel() for p in build(name).parameters())  # each tensor once
            verdict = "ok" if found == expected else f"expected {expected:,}"
            print(f"{name:9s} {found:>13,}  {verdict}")
            if found != expected:
                raise SystemExit(1)


if __name__ == "__main__":
    main()
