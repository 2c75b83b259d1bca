"""Official SLaK checkpoints -> mmrevcol ``SLaK`` state dicts.

Official layouts: classification training checkpoints (``model``, optionally ``model_ema``; final ``norm.*`` and
``head.*`` dropped) and mmdet 2 / mmseg 0 fine-tuned checkpoints (``state_dict``, keys prefixed ``backbone.``,
output norms ``norm{i}.*`` kept). Key renames (official -> mmrevcol)::

    stages.{i}.{j}.large_kernel.                  stages.{i}.{j}.depthwise_conv.
        LoRA1.{conv,bn}  (K×s)                        tall.{conv,bn}
        LoRA2.{conv,bn}  (s×K)                        wide.{conv,bn}
        lkb_origin.{conv,bn}  (K×K, not decomposed)   square.{conv,bn}
        small_conv.{conv,bn}  (s×s)                   small.{conv,bn}
        lkb_reparam.  (re-parameterised K×K + bias)   fused.
    stages.{i}.{j}.pwconv{1,2}.                   stages.{i}.{j}.pointwise_conv{1,2}.

``downsample_layers.*``, the blocks' ``norm``/``gamma`` and ``norm{i}`` keep their names. Works on any dict laid
out like a checkpoint, e.g. one holding only parameter gradients (no BN buffers).
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Sequence

from mmengine.logging import print_log
from torch import Tensor, nn

from .core import CheckpointMismatchError, Layout, register_layout

_RENAMES = [
    (re.compile(r'\.large_kernel\.'), '.depthwise_conv.'),
    (re.compile(r'\.depthwise_conv\.LoRA1\.'), '.depthwise_conv.tall.'),
    (re.compile(r'\.depthwise_conv\.LoRA2\.'), '.depthwise_conv.wide.'),
    (re.compile(r'\.depthwise_conv\.lkb_origin\.'), '.depthwise_conv.square.'),
    (re.compile(r'\.depthwise_conv\.small_conv\.'), '.depthwise_conv.small.'),
    (re.compile(r'\.depthwise_conv\.lkb_reparam\.'), '.depthwise_conv.fused.'),
    (re.compile(r'\.pwconv([12])\.'), r'.pointwise_conv\1.'),
]
_BACKBONE_KEY = re.compile(r'^(downsample_layers\.\d+\.|stages\.\d+\.|norm\d\.)')
_FAMILY_KEY = re.compile(r'^stages\.\d+\.\d+\.(large_kernel|depthwise_conv)\.'
                         r'(LoRA1|LoRA2|lkb_origin|small_conv|lkb_reparam|tall|wide|square|small|fused)\.')
_OUT_NORM = re.compile(r'^norm(\d)\.')


def convert_key(key: str) -> str:
    """mmrevcol name of an official (or already mmrevcol) SLaK backbone key."""
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


def is_slak(keys: Sequence[str]) -> bool:
    return any(_FAMILY_KEY.match(k) for k in keys)


def convert_slak(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Prefix-stripped weights (official or mmrevcol layout) -> ``SLaK`` keys; classification ``norm``/``head``
    dropped."""
    if not is_slak(list(state_dict)):
        raise CheckpointMismatchError('no SLaK weights in this checkpoint (expected keys stages.<i>.<j>.'
                                      f'large_kernel.* or depthwise_conv.*; first keys: {list(state_dict)[:5]})')
    return OrderedDict((convert_key(k), v) for k, v in state_dict.items() if _BACKBONE_KEY.match(k))


def describe_arch(state_dict: Mapping[str, Tensor]) -> dict:
    """Architecture implied by a ``SLaK`` state dict: dims, depths, kernel_size (4 + small), decompose."""
    dims, depths, kernels = [], [], []
    small, decompose = None, None
    for i in range(4):
        blocks = {int(m.group(1)) for k in state_dict for m in [re.match(rf'^stages\.{i}\.(\d+)\.', k)] if m}
        depths.append(len(blocks))
        prefix = f'stages.{i}.0.depthwise_conv.'
        tall, square = state_dict.get(prefix + 'tall.conv.weight'), state_dict.get(prefix + 'square.conv.weight')
        fused = state_dict.get(prefix + 'fused.weight')
        weight = next((w for w in (tall, square, fused) if w is not None), None)
        dims.append(int(weight.shape[0]) if weight is not None else None)
        kernels.append(int(weight.shape[-2]) if weight is not None else None)
        if tall is not None:
            small, decompose = int(tall.shape[-1]), True
        elif square is not None:
            decompose = False
        w = state_dict.get(prefix + 'small.conv.weight')
        if w is not None:
            small = int(w.shape[-1])
    return dict(dims=dims, depths=depths, kernel_size=kernels + [small], decompose=decompose,
                out_norms=sorted(int(m.group(1)) for k in state_dict for m in [_OUT_NORM.match(k)]
                                 if m and k.endswith('.weight')))


def fit_out_norms(state_dict: Dict[str, Tensor], model: nn.Module, **unused) -> Dict[str, Tensor]:
    """The output norms ``norm{i}`` are task layers: a classification checkpoint has none (the model keeps its
    initial ones, as the official fine-tuning does), a detection checkpoint's are dropped for a model without
    them."""
    expected = model.state_dict()
    out = OrderedDict((k, v) for k, v in state_dict.items() if not (_OUT_NORM.match(k) and k not in expected))
    added = [k for k, v in expected.items() if _OUT_NORM.match(k) and k not in out]
    for k in added:
        out[k] = expected[k]
    dropped = len(state_dict) - (len(out) - len(added))
    if added or dropped:
        print_log(f'SLaK: output norms: {len(added)} tensors kept at their initial values (not in the checkpoint), '
                  f'{dropped} dropped (the model has no such norm)', logger='current')
    return out


SLAK_LAYOUT = register_layout(Layout(name='SLaK', convert=convert_slak, detect=is_slak, adapt=fit_out_norms,
                                     describe=describe_arch))
