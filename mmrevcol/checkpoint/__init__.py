"""Checkpoint layouts and the one loading policy (see :mod:`mmrevcol.checkpoint.core`).

Pure state-dict functions, below both the backbones and the hooks: nothing here imports model code. Each backbone
family registers its :class:`Layout` in a module of its own (``revcol.py``, ...), imported below.
"""
from .core import (CheckpointMismatchError, Layout, atomic_save, check_state_dict, detect_layout,
                   extract_state_dict, layout_modules, layout_of, load_pretrained, prepare_model_checkpoint,
                   prepare_state_dict, read_checkpoint, register_layout, registered_layouts, strip_prefixes,
                   to_backbone_state_dict)
from .hiri_vit import HIRI_VIT_LAYOUT  # noqa: F401  (registers the HIRI-ViT layout)
from .init_cfg import PretrainedInit, check_init_cfg, check_model_init_cfgs
from .kernel_padding import DEFAULT_SEED, DEFAULT_STD, depthwise_kernel_size, pad_kernel, pad_kernels
from . import revcol_vit  # noqa: F401  (registers the RevColViT layout)
from .revcol import _BACKBONE_KEY, REVCOL_LAYOUT, convert_key, convert_revcol, describe_arch, to_revcol_state_dict
from .slak import SLAK_LAYOUT  # noqa: F401  (registers the SLaK layout)

__all__ = [
    'CheckpointMismatchError', 'atomic_save', 'Layout', 'check_state_dict', 'detect_layout', 'extract_state_dict',
    'layout_of',
    'layout_modules', 'prepare_model_checkpoint', 'PretrainedInit', 'check_init_cfg', 'check_model_init_cfgs',
    'load_pretrained', 'prepare_state_dict', 'read_checkpoint', 'register_layout', 'registered_layouts',
    'strip_prefixes', 'to_backbone_state_dict', 'DEFAULT_SEED', 'DEFAULT_STD', 'depthwise_kernel_size',
    'pad_kernel', 'pad_kernels', 'REVCOL_LAYOUT', 'convert_key', 'convert_revcol', 'describe_arch',
    'to_revcol_state_dict', '_BACKBONE_KEY'
]
