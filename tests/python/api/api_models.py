"""Small float models shared by the API tests (fixed seeds; every layer kind the API quantizes)."""

import torch
from torch import nn


class ConvNet(nn.Module):
    """Conv2d (per-channel and grouped 2/4-bit weights), LayerNorm, then Linears whose input
    features give the three 4-bit paths: grouped (576 -> group 96, tiled), per-row tiled (96) and
    per-row untiled (48, not a multiple of 32), with odd output features (7) for packing.

    (Input features stay multiples of 16: optimum-quanto's bf16 int8 path calls
    torch._weight_int8pack_mm, which crashes with SIGSEGV in torch 2.13 on CPU otherwise, e.g. K=40.)"""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 16, 3)
        self.norm = nn.LayerNorm(576)
        self.fc1 = nn.Linear(576, 96)
        self.fc2 = nn.Linear(96, 48)
        self.fc3 = nn.Linear(48, 7, bias=False)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.conv2(x).flatten(1)
        x = self.norm(x)
        x = torch.nn.functional.gelu(self.fc1(x))
        return self.fc3(torch.relu(self.fc2(x)))


def make_convnet(dtype=torch.float32, seed=1234):
    torch.manual_seed(seed)
    return ConvNet().to(dtype).eval()


def convnet_inputs(dtype=torch.float32, batches=3, seed=99):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, 8, 8, generator=g).to(dtype) for _ in range(batches)]


class MLP(nn.Module):
    def __init__(self, k=256, hidden=128, n=64):
        super().__init__()
        self.up = nn.Linear(k, hidden)
        self.down = nn.Linear(hidden, n)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def make_mlp(dtype=torch.float32, seed=4321, **kw):
    torch.manual_seed(seed)
    return MLP(**kw).to(dtype).eval()
