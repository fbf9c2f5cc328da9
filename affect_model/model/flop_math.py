"""The FLOP formulas every tower shares: a transformer layer and a convolution's output length.

2 FLOPs per multiply-add of every linear layer and attention product (QK^T and AV), which is what
``torch.utils.flop_counter.FlopCounterMode`` counts. ``affect_model.model.families`` (per encoder
family) and ``affect_model.model.flops`` (per tower and sample) build on them.
"""

from __future__ import annotations


def transformer_layer(n: int, d: int, ffn: int, kv: int | None = None, glu: bool = False) -> int:
    """One self-attention + MLP layer over ``n`` tokens of width ``d`` (``kv``: K/V width for GQA)."""
    kv = d if kv is None else kv
    projections = 2 * n * d * (2 * d + 2 * kv)  # q, o: d x d; k, v: d x kv
    attention = 4 * n * n * d  # QK^T and AV
    mlp = (6 if glu else 4) * n * d * ffn
    return projections + attention + mlp


def conv_out(length: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a 1-D convolution."""
    return (length + 2 * padding - kernel) // stride + 1
