"""The mini-Xception network (Arriaga et al. 2017) in torch, with Keras' padding and BatchNorm rules.

Built to read the Keras weights of ``fer``'s ``emotion_model.hdf5`` (``pipelines.signals.expression``
explains each rule). Inference only: BatchNorm uses the stored moving statistics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # Keras' BatchNormalization default (the file's layers say 0.001 too)
BLOCKS = ((16, 4), (32, 7), (64, 10), (128, 13))  # (filters, BN index of the first separable conv)


def same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis of length ``n``: (before, after)."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


class KerasBN(nn.Module):
    """BatchNormalization (axis -1 = channels) in inference mode with Keras' epsilon."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        for name in ("gamma", "beta", "moving_mean", "moving_variance"):
            self.register_buffer(name, torch.zeros(channels))

    def load(self, w: dict[str, np.ndarray], layer: str) -> None:
        for name in ("gamma", "beta", "moving_mean", "moving_variance"):
            getattr(self, name).copy_(_t(w[f"{layer}/{name}"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gamma / torch.sqrt(self.moving_variance + BN_EPS)
        shift = self.beta - self.moving_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def conv_same(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, groups: int = 1, bias=None):
    """A convolution with TensorFlow's 'same' padding (zeros, odd pixel bottom/right)."""
    kh, kw = weight.shape[2:]
    top, bottom = same_pad(x.shape[2], kh, stride)
    left, right = same_pad(x.shape[3], kw, stride)
    x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, weight, bias, stride=stride, groups=groups)


def maxpool_same(x: torch.Tensor, k: int = 3, stride: int = 2) -> torch.Tensor:
    """Max pooling with TensorFlow's 'same' padding (padded cells never win: -inf)."""
    top, bottom = same_pad(x.shape[2], k, stride)
    left, right = same_pad(x.shape[3], k, stride)
    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return F.max_pool2d(x, k, stride)


class MiniXception(nn.Module):
    """64x64x1 -> 7 probabilities: two 3x3 convs, four residual separable blocks, a 3x3 conv, GAP."""

    def __init__(self) -> None:
        super().__init__()
        self.w: dict[str, torch.Tensor] = {}
        self.bn = nn.ModuleDict()

    def load_keras(self, weights: dict[str, np.ndarray]) -> None:
        for key, a in weights.items():
            layer, leaf = key.split("/")
            if layer.startswith("batch_normalization"):
                if layer not in self.bn:
                    self.bn[layer] = KerasBN(a.shape[0])
                continue
            if leaf == "depthwise_kernel":  # (kh, kw, in, 1) -> (in, 1, kh, kw)
                self.w[key] = _t(a.transpose(2, 3, 0, 1))
            elif leaf in ("kernel", "pointwise_kernel"):  # (kh, kw, in, out) -> (out, in, kh, kw)
                self.w[key] = _t(a.transpose(3, 2, 0, 1))
            else:
                self.w[key] = _t(a)
        for layer, bn in self.bn.items():
            bn.load(weights, layer)

    def _sep(self, x: torch.Tensor, i: int) -> torch.Tensor:
        name = f"separable_conv2d_{i}"
        x = conv_same(x, self.w[f"{name}/depthwise_kernel"], groups=x.shape[1])
        return conv_same(x, self.w[f"{name}/pointwise_kernel"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits-free: the softmax probabilities, N x 7."""
        for i in (1, 2):  # padding 'valid'
            x = F.relu(self.bn[f"batch_normalization_{i}"](F.conv2d(x, self.w[f"conv2d_{i}/kernel"])))
        for b, (_, bn) in enumerate(BLOCKS):
            sep = 2 * b + 1
            residual = self.bn[f"batch_normalization_{bn - 1}"](
                conv_same(x, self.w[f"conv2d_{b + 3}/kernel"], stride=2)
            )
            y = F.relu(self.bn[f"batch_normalization_{bn}"](self._sep(x, sep)))
            y = self.bn[f"batch_normalization_{bn + 1}"](self._sep(y, sep + 1))
            x = maxpool_same(y) + residual
        x = conv_same(x, self.w["conv2d_7/kernel"], bias=self.w["conv2d_7/bias"])
        return torch.softmax(x.mean(dim=(2, 3)), dim=1)
