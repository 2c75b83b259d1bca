"""Kernel padding (RevCol paper, appendix D.3.1): grow pretrained k0 x k0 depthwise kernels to k x k.

The pretrained kernel sits in the centre, the new entries are drawn from N(0, std) with a tiny std (1e-7), so with
padding ``(k - 1) // 2`` the padded network computes (almost exactly) the pretrained function. One pure function
on state dicts, :func:`pad_kernels`, serves every loading path: ``RevCol.init_weights`` (``init_cfg``),
:class:`KernelPaddingHook` (``load_from``) and ``tools/convert_checkpoint.py --kernel-size``.
"""
import re
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
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


def _revcol_modules(model) -> List[Tuple[str, object]]:
    from ..models.backbones.revcol import RevCol  # late import: the backbone module imports mmrevcol.engine users
    return [(name, m) for name, m in model.named_modules() if isinstance(m, RevCol)]


@HOOKS.register_module()
class KernelPaddingHook(Hook):
    """Prepare a ``load_from`` checkpoint for the RevCol backbone(s) of the model: convert, then kernel-pad.

    mmengine's ``load_from`` loads with ``strict=False`` and would skip (with a warning) every kernel whose shape
    differs. This hook edits the loaded checkpoint in ``after_load_checkpoint``, before it reaches the model:

    - keys under the backbone's prefix (``backbone.``) in the official layout (``backbone.subnet0.level0...``,
      official mmdet 2 / mmseg 0 checkpoints) are renamed to the mmrevcol layout;
    - a checkpoint holding only official or mmrevcol backbone keys without prefix (e.g. an official classification
      checkpoint, weights under ``model``) is converted and prefixed, heads dropped;
    - the depthwise kernels of the backbone keys are padded to the model's kernel size (same noise as the
      ``init_cfg`` path for the same ``seed``).

    Resuming (``resume=True``) never pads: a checkpoint of this run already has the model's kernel size, and one
    that does not is a clear error instead of a silently half-loaded model.

    Args:
        std (float): Std of the new kernel entries. Defaults to 1e-7.
        seed (int): Seed of the padding noise. Defaults to 0.
    """
    priority = 'VERY_HIGH'

    def __init__(self, std: float = DEFAULT_STD, seed: int = DEFAULT_SEED):
        self.std = std
        self.seed = seed

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model
        while isinstance(getattr(model, 'module', None), torch.nn.Module):
            model = model.module
        revcols = _revcol_modules(model)
        if not revcols:
            return
        if len(revcols) > 1:
            raise ValueError(f'KernelPaddingHook: several RevCol modules ({[n for n, _ in revcols]}); '
                             'pad their checkpoints with tools/convert_checkpoint.py instead')
        name, revcol = revcols[0]
        self.process(checkpoint, f'{name}.' if name else '', revcol.kernel_size,
                     resume=bool(getattr(runner, '_resume', False)))

    def process(self, checkpoint: dict, prefix: str, kernel_size: int, resume: bool = False) -> dict:
        """Convert and pad ``checkpoint`` in place for a RevCol whose parameters start with ``prefix``."""
        from ..checkpoint import _BACKBONE_KEY, convert_key, to_revcol_state_dict

        for key in ('state_dict', 'model', 'module'):
            if isinstance(checkpoint.get(key), Mapping):
                source = checkpoint[key]
                break
        else:
            key, source = None, checkpoint
        state_dict = {re.sub(r'^(module\.)+', '', k): v for k, v in source.items()}
        tensors = {k: v for k, v in state_dict.items() if isinstance(v, Tensor)}
        if prefix and not any(k.startswith(prefix) for k in tensors) and \
                any(_BACKBONE_KEY.match(k) for k in tensors):
            # A backbone-only checkpoint (official classification layout or converted): convert and prefix.
            state_dict = {prefix + k: v for k, v in to_revcol_state_dict(tensors, prefix='').items()}
        else:
            converted = {}
            for k, v in state_dict.items():
                if k.startswith(prefix) and isinstance(v, Tensor):
                    new = convert_key(k[len(prefix):])
                    if new is not None:
                        converted[prefix + new] = v
                else:
                    converted[k] = v
            state_dict = converted
        backbone = {k: v for k, v in state_dict.items() if k.startswith(prefix) and isinstance(v, Tensor)}
        k0 = depthwise_kernel_size(backbone)
        if resume:
            if k0 is not None and k0 != kernel_size:
                raise ValueError(f'KernelPaddingHook: resuming from a checkpoint with {k0}x{k0} depthwise kernels '
                                 f'into a model with {kernel_size}x{kernel_size} ones; resume only continues a '
                                 'run of this model: start from a pretrained checkpoint with load_from instead')
        else:
            padded, _ = pad_kernels(backbone, kernel_size, self.std, self.seed)
            state_dict.update(padded)
        if key is None:
            checkpoint.clear()
            checkpoint.update(state_dict)
        else:
            checkpoint['state_dict'] = state_dict  # mmengine loads ``state_dict`` (or the dict itself)
        return checkpoint
