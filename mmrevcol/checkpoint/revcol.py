"""Official RevCol checkpoints -> mmrevcol ``RevCol`` state dicts.

Official layouts: weights under ``model`` (classification) or ``state_dict`` (mmdet 2 / mmseg 0, keys prefixed
``backbone.``), often with ``module.`` prefixes, plus head keys (``cls_blocks``, ``decoder_blocks``, ...) that are
dropped. Key renames (official -> mmrevcol)::

    subnet{j}.alpha{l}                               columns.{j}.alpha.{l}     (dropped for j == 0: it multiplies
                                                                                 zeros, the first column has none)
    subnet{j}.level{l}.                              columns.{j}.levels.{l}.
    fusion.up.channel_reschedule.{0,1}.              fusion.up.{proj,norm}.
    fusion.up2.channel_reschedule.{0,1}.  (RevCol-H) fusion.up_top.{proj,norm}.
    blocks.{b}.{dwconv,pwconv1,pwconv2}.             blocks.{b}.{depthwise_conv,pointwise_conv1,pointwise_conv2}.

A ``RevCol`` with a larger ``kernel_size`` than the checkpoint's gets its depthwise kernels padded on load.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Sequence

from torch import Tensor, nn

from .core import CheckpointMismatchError, Layout, register_layout, strip_prefixes, extract_state_dict
from .kernel_padding import DEFAULT_SEED, DEFAULT_STD, depthwise_kernel_size, pad_kernels

_RENAMES = [
    (re.compile(r'^subnet(\d+)\.alpha(\d)$'), r'columns.\1.alpha.\2'),
    (re.compile(r'^subnet(\d+)\.level(\d)\.'), r'columns.\1.levels.\2.'),
    (re.compile(r'\.fusion\.up\.channel_reschedule\.0\.'), '.fusion.up.proj.'),
    (re.compile(r'\.fusion\.up\.channel_reschedule\.1\.'), '.fusion.up.norm.'),
    (re.compile(r'\.fusion\.up2\.channel_reschedule\.0\.'), '.fusion.up_top.proj.'),
    (re.compile(r'\.fusion\.up2\.channel_reschedule\.1\.'), '.fusion.up_top.norm.'),
    (re.compile(r'\.dwconv\.'), '.depthwise_conv.'),
    (re.compile(r'\.pwconv1\.'), '.pointwise_conv1.'),
    (re.compile(r'\.pwconv2\.'), '.pointwise_conv2.'),
]
_BACKBONE_KEY = re.compile(r'^(stem\.|subnet\d+\.|columns\.\d+\.)')
# A ConvNeXt-block column (RevColViT's columns have the same outer names but attention blocks).
_FAMILY_KEY = re.compile(r'^(subnet\d+\.|columns\.\d+\.levels\.\d+\.blocks\.\d+\.(depthwise_conv|dwconv)\.)')


def convert_key(key: str) -> Optional[str]:
    """mmrevcol name of an official (or already mmrevcol) backbone key; None for keys to drop."""
    if re.match(r'^subnet0\.alpha\d$', key):
        return None
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


def convert_revcol(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Prefix-stripped weights (official or mmrevcol layout) -> ``RevCol`` keys, head keys dropped."""
    backbone = {k: v for k, v in state_dict.items() if _BACKBONE_KEY.match(k)}
    if not any(_FAMILY_KEY.match(k) for k in backbone):
        raise CheckpointMismatchError('no RevCol weights in this checkpoint (expected keys stem.*, subnet<j>.* or '
                                      f'columns.<j>.*; first keys: {list(state_dict)[:5]})')
    out = OrderedDict()
    for key, value in backbone.items():
        new = convert_key(key)
        if new is not None:
            out[new] = value
    return out


def is_revcol(keys: Sequence[str]) -> bool:
    return any(_FAMILY_KEY.match(k) for k in keys)


def describe_arch(state_dict: Mapping[str, Tensor]) -> dict:
    """Architecture implied by a ``RevCol`` state dict (channels, layers, num_columns, kernel_size)."""
    columns = {int(m.group(1)) for k in state_dict for m in [re.match(r'^columns\.(\d+)\.', k)] if m}
    channels, layers = [], []
    for level in range(4):
        blocks = {int(m.group(1)) for k in state_dict
                  for m in [re.match(rf'^columns\.0\.levels\.{level}\.blocks\.(\d+)\.', k)] if m}
        layers.append(len(blocks))
        w = state_dict.get(f'columns.0.levels.{level}.blocks.0.depthwise_conv.weight')
        channels.append(int(w.shape[0]) if w is not None else None)
    try:
        kernel = depthwise_kernel_size(state_dict)
    except ValueError as e:
        kernel = f'invalid ({e})'
    return dict(channels=channels, layers=layers, num_columns=len(columns), kernel_size=kernel)


def pad_to_model(state_dict: Dict[str, Tensor], model: nn.Module, std: Optional[float] = None,
                 seed: int = DEFAULT_SEED) -> Dict[str, Tensor]:
    """Kernel-pad the depthwise kernels to ``model.kernel_size`` (a no-op when they already fit)."""
    std = getattr(model, 'kernel_pad_std', DEFAULT_STD) if std is None else std
    padded, _ = pad_kernels(state_dict, model.kernel_size, std, seed)
    return padded


REVCOL_LAYOUT = register_layout(Layout(name='RevCol', convert=convert_revcol, detect=is_revcol,
                                       adapt=pad_to_model, describe=describe_arch))


def to_revcol_state_dict(checkpoint, prefix: Optional[str] = None) -> Dict[str, Tensor]:
    """Convert a loaded checkpoint of any supported layout to ``RevCol`` keys (head keys dropped)."""
    return convert_revcol(strip_prefixes(extract_state_dict(checkpoint), prefix))
