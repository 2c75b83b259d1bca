"""``KernelPaddingHook``: kernel padding (RevCol paper, appendix D.3.1) for ``load_from`` checkpoints.

The pure functions (:func:`pad_kernels`, ...) live in :mod:`mmrevcol.checkpoint.kernel_padding`; they are
re-exported here for existing imports.
"""
import re
from typing import List, Mapping, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch import Tensor

from ..checkpoint.kernel_padding import (DEFAULT_SEED, DEFAULT_STD, DEPTHWISE_KERNEL,  # noqa: F401
                                         depthwise_kernel_size, pad_kernel, pad_kernels)


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
        from ..checkpoint.revcol import _BACKBONE_KEY, convert_key, to_revcol_state_dict

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
