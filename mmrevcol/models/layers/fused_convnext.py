"""A fused CPU inference path for stacks of mmpretrain ``ConvNeXtBlock`` (used by RevCol's levels).

Eager fp32 CPU inference without autograd runs each block with oneDNN's fused linear ops: the first linear layer
computes GELU in its epilogue and, once ``gamma`` is folded into the second (``switch_to_deploy``), the second adds
the shortcut in its own — the same function, two or three passes over the block's activations fewer.

Switch: ``MMREVCOL_FUSED_CPU=0`` in the environment (or ``set_fused_cpu(False)``) forces the standard path, e.g. to
compare the two or to rule the fused kernels out on a CPU whose oneDNN picks other kernels (AVX2 vs AVX-512).
"""
import os
from typing import Iterable

import torch
import torch.nn.functional as F
from mmpretrain.models.backbones.convnext import ConvNeXtBlock
from torch import Tensor, nn


def _mkldnn_linear_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, '_linear_pointwise')
    except (AttributeError, RuntimeError):
        return False


#: oneDNN's fused linear ops exist in this torch build.
AVAILABLE = _mkldnn_linear_available()
_enabled = os.environ.get('MMREVCOL_FUSED_CPU', '1') != '0'


def set_fused_cpu(enabled: bool) -> None:
    """Turn the fused CPU path on or off for this process (default: on, unless ``MMREVCOL_FUSED_CPU=0``)."""
    global _enabled
    _enabled = bool(enabled)


def fused_cpu_enabled() -> bool:
    return AVAILABLE and _enabled


def fast_inference_ok(x: Tensor) -> bool:
    """Eager fp32 CPU inference without autograd: where :func:`fused_block_forward` may replace the blocks.

    Never while tracing, compiling or exporting: the fused ops are oneDNN's private ones (the same ones Inductor's
    CPU backend emits), which exporters don't know; there the standard ops run and the compiler fuses them.
    """
    return (fused_cpu_enabled() and x.device.type == 'cpu' and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and x.requires_grad) and not torch.is_autocast_enabled('cpu')
            and not torch.jit.is_tracing() and not torch.jit.is_scripting() and not torch.compiler.is_compiling()
            and not torch.compiler.is_exporting())


def fusable(block: nn.Module) -> bool:
    """A block the fused path computes exactly: linear pointwise convs, GELU, no GRN."""
    return (isinstance(block, ConvNeXtBlock) and block.linear_pw_conv and block.grn is None
            and isinstance(block.act, nn.GELU) and isinstance(block.pointwise_conv1, nn.Linear))


def fused_block_forward(block: ConvNeXtBlock, x: Tensor) -> Tensor:
    """mmpretrain's ``ConvNeXtBlock.forward`` (eval, linear pointwise convs) with oneDNN's fused ops."""
    n, c, h, w = x.shape
    y = block.depthwise_conv(x).permute(0, 2, 3, 1)  # channels-last in: (N, H, W, C) contiguous, no copy
    norm = block.norm
    y = F.layer_norm(y, norm.normalized_shape, norm.weight, norm.bias, norm.eps).reshape(-1, c)
    fc1, fc2 = block.pointwise_conv1, block.pointwise_conv2
    y = torch.ops.mkldnn._linear_pointwise(y, fc1.weight, fc1.bias, 'gelu', [], block.act.approximate)
    shortcut = x.permute(0, 2, 3, 1).reshape(-1, c)
    if block.gamma is None:
        y = torch.ops.mkldnn._linear_pointwise.binary(y, shortcut, fc2.weight, fc2.bias, 'add')
    else:
        y = torch.addcmul(shortcut, F.linear(y, fc2.weight, fc2.bias), block.gamma)
    return y.view(n, h, w, c).permute(0, 3, 1, 2)


def can_fuse(blocks: Iterable[nn.Module], x: Tensor) -> bool:
    """The fused path applies to ``blocks`` on ``x``: every block fusable, eval mode, no gradient wanted."""
    blocks = list(blocks)
    return (all(fusable(b) and not b.training for b in blocks) and fast_inference_ok(x)
            and not (torch.is_grad_enabled() and any(p.requires_grad for b in blocks for p in b.parameters())))
