"""``KernelPaddingHook``: kernel padding (RevCol paper, appendix D.3.1) for ``load_from`` checkpoints.

The pure functions (:func:`pad_kernels`, ...) live in :mod:`mmrevcol.checkpoint.kernel_padding`; they are
re-exported here for existing imports.
"""
from typing import Optional

from mmengine.registry import HOOKS

from ..checkpoint.kernel_padding import (DEFAULT_SEED, DEFAULT_STD, DEPTHWISE_KERNEL,  # noqa: F401
                                         depthwise_kernel_size, pad_kernel, pad_kernels)
from .checkpoint_loading import CheckpointLoadingHook


@HOOKS.register_module()
class KernelPaddingHook(CheckpointLoadingHook):
    """``load_from`` a RevCol checkpoint with kernel padding of chosen noise, backbone-only files accepted.

    Every ``load_from`` already goes through :class:`CheckpointLoadingHook` (official layouts converted, kernels
    padded to the model's ``kernel_size``, strict); this hook sets the padding noise and, for the paper's
    fine-tuning from an ImageNet checkpoint, accepts a backbone-only file (official classification layout or
    converted): necks and heads then keep their initialisation, logged in one line. (``init_cfg`` of the
    backbone is the usual way to load such a file.) Resuming never pads: a checkpoint of this run already has
    the model's kernel size, and one that does not is a clear error.

    Args:
        std (float): Std of the new kernel entries. Defaults to 1e-7.
        seed (int): Seed of the padding noise. Defaults to 0.
        allow_partial (bool): See :class:`CheckpointLoadingHook`. Defaults to False.
        allow_backbone_only (bool): See :class:`CheckpointLoadingHook`. Defaults to True.
    """

    def __init__(self, std: float = DEFAULT_STD, seed: int = DEFAULT_SEED, allow_partial: bool = False,
                 allow_backbone_only: bool = True, mode: Optional[str] = None):
        super().__init__(allow_partial=allow_partial, allow_backbone_only=allow_backbone_only, mode=mode,
                         adapt_options=dict(std=std, seed=seed))
        self.std = std
        self.seed = seed
