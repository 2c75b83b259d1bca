"""Kernel padding (RevCol paper, appendix D.3.1): grow pretrained k0 x k0 depthwise kernels to k x k.

The pretrained kernel sits in the centre, the new entries are drawn from N(0, std) with a tiny std (1e-7), so with
padding ``(k - 1) // 2`` the padded network computes (almost exactly) the pretrained function. One pure function
on state dicts, :func:`pad_kernels`, serves every loading path: ``RevCol.init_weights`` (``init_cfg``),
``KernelPaddingHook``/the load_from path and ``tools/convert_checkpoint.py --kernel-size``.
"""
import re
from typing import Dict, Mapping, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor

# Depthwise kernels of the ConvNeXt blocks, in the mmrevcol and in the official layout (any prefix).
DEPTHWISE_KERNEL = re.compile(r'(^|\.)blocks\.\d+\.(depthwise_conv|dwconv)\.weight$')
DEFAULT_STD = 1e-7
DEFAULT_SEED = 0


def depthwise_kernel_size(state_dict: Mapping[str, Tensor]) -> Optional[int]:
    """Spatial size of the depthwise kernels in ``state_dict`` (None if it has none); mixed sizes are an error."""
    sizes = {tuple(v.shape[-2:]) for k, v in state_dict.items() if DEPTHWISE_KERNEL.search(k)}
    if not sizes:
        return None
    if len(sizes) > 1:
        raise ValueError(f'depthwise kernels of mixed sizes in one checkpoint: {sorted(sizes)}')
    (h, w), = sizes
    if h != w:
        raise ValueError(f'non-square depthwise kernels ({h}x{w}) cannot be padded')
    return h


def pad_kernel(weight: Tensor, kernel_size: int, std: float = DEFAULT_STD,
               generator: Optional[torch.Generator] = None) -> Tensor:
    """Centre ``weight`` (C, 1, k0, k0) in a (C, 1, k, k) kernel whose other entries are N(0, std).

    The result has ``weight``'s device and dtype, except half-precision kernels, which come back in float32.
    """
    k0 = weight.shape[-1]
    if kernel_size % 2 == 0 or k0 % 2 == 0:
        raise ValueError(f'kernel padding needs odd sizes, got {k0} -> {kernel_size}')
    if kernel_size < k0:
        raise ValueError(f'checkpoint kernel {k0}x{k0} is larger than the model kernel {kernel_size}x{kernel_size}; '
                         'kernels can only be padded, not cropped')
    noise = torch.randn((*weight.shape[:-2], kernel_size, kernel_size), generator=generator, dtype=torch.float64)
    # fp16/bf16 checkpoints: N(0, 1e-7) would mostly underflow (fp16) or lose the centre's scale, so pad in fp32;
    # load_state_dict casts to the parameter's dtype anyway.
    out = (noise * std).to(torch.promote_types(weight.dtype, torch.float32))
    p = (kernel_size - k0) // 2
    out = out.to(weight.device)
    out[..., p:p + k0, p:p + k0] = weight
    return out


def pad_kernels(state_dict: Mapping[str, Tensor], kernel_size: int, std: float = DEFAULT_STD,
                seed: int = DEFAULT_SEED, logger='current') -> Tuple[Dict[str, Tensor], int]:
    """Pad every depthwise kernel of ``state_dict`` to ``kernel_size``; returns (new dict, number padded).

    Deterministic: the noise comes from a generator seeded with ``seed``, drawn in sorted key order. Kernels
    already of ``kernel_size`` are left as they are; larger ones are an error.
    """
    out = dict(state_dict)
    k0 = depthwise_kernel_size(state_dict)
    if k0 is None or k0 == kernel_size:
        return out, 0
    generator = torch.Generator().manual_seed(seed)
    keys = sorted(k for k in state_dict if DEPTHWISE_KERNEL.search(k))
    for key in keys:
        out[key] = pad_kernel(state_dict[key], kernel_size, std, generator)
    print_log(f'kernel padding: {len(keys)} depthwise kernels padded from {k0}x{k0} to '
              f'{kernel_size}x{kernel_size} (new entries ~ N(0, {std:g}), seed {seed})', logger=logger)
    return out, len(keys)
