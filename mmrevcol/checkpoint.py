"""Official RevCol checkpoints -> mmrevcol ``RevCol`` state dicts, and strict, explained loading.

Official layouts: weights under ``model`` (classification) or ``state_dict`` (mmdet 2 / mmseg 0, keys prefixed
``backbone.``), often with ``module.`` prefixes, plus head keys (``cls_blocks``, ``decoder_blocks``, ...) that are
dropped. Key renames (official -> mmrevcol)::

    subnet{j}.alpha{l}                               columns.{j}.alpha.{l}     (dropped for j == 0: it multiplies
                                                                                 zeros, the first column has none)
    subnet{j}.level{l}.                              columns.{j}.levels.{l}.
    fusion.up.channel_reschedule.{0,1}.              fusion.up.{proj,norm}.
    fusion.up2.channel_reschedule.{0,1}.  (RevCol-H) fusion.up_top.{proj,norm}.
    blocks.{b}.{dwconv,pwconv1,pwconv2}.             blocks.{b}.{depthwise_conv,pointwise_conv1,pointwise_conv2}.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional

from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint
from torch import Tensor, nn

from .engine.kernel_padding import depthwise_kernel_size, pad_kernels

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


class CheckpointMismatchError(RuntimeError):
    """The checkpoint is not a RevCol checkpoint of the model's architecture."""


def extract_state_dict(checkpoint) -> Dict[str, Tensor]:
    """The weights of a loaded checkpoint: under ``state_dict``, ``model`` or ``module``, or the dict itself."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(f'a checkpoint must be a dict of weights, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    weights = {k: v for k, v in checkpoint.items() if isinstance(v, Tensor)}
    if not weights:
        raise CheckpointMismatchError('the checkpoint holds no tensors (expected weights under state_dict, '
                                      f'model or at the top level; found keys {list(checkpoint)[:5]})')
    return weights


def strip_prefixes(state_dict: Mapping[str, Tensor], prefix: Optional[str] = None) -> Dict[str, Tensor]:
    """Remove ``module.`` and the backbone prefix (``prefix``, or ``backbone.`` when such keys exist)."""
    out = {re.sub(r'^(module\.)+', '', k): v for k, v in state_dict.items()}
    if prefix is None and any(k.startswith('backbone.') for k in out):
        prefix = 'backbone.'
    if prefix:
        out = {k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)}
    return out


def convert_key(key: str) -> Optional[str]:
    """mmrevcol name of an official (or already mmrevcol) backbone key; None for keys to drop."""
    if re.match(r'^subnet0\.alpha\d$', key):
        return None
    for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
    return key


def to_revcol_state_dict(checkpoint, prefix: Optional[str] = None) -> Dict[str, Tensor]:
    """Convert a loaded checkpoint of any supported layout to ``RevCol`` keys (head keys dropped)."""
    state_dict = strip_prefixes(extract_state_dict(checkpoint), prefix)
    backbone = {k: v for k, v in state_dict.items() if _BACKBONE_KEY.match(k)}
    if not backbone:
        raise CheckpointMismatchError('no RevCol weights in this checkpoint (expected keys stem.*, subnet<j>.* or '
                                      f'columns.<j>.*; first keys: {list(state_dict)[:5]})')
    out = OrderedDict()
    for key, value in backbone.items():
        new = convert_key(key)
        if new is not None:
            out[new] = value
    return out


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
    return dict(channels=channels, layers=layers, num_columns=len(columns),
                kernel_size=depthwise_kernel_size(state_dict))


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Raise :class:`CheckpointMismatchError` naming every difference between ``state_dict`` and ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f'{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}'
              for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    if not (missing or unexpected or shapes):
        return
    ours = describe_arch(expected)
    theirs = describe_arch(state_dict)
    lines = [f'checkpoint does not match the model: checkpoint arch {theirs}, model arch {ours}']
    for title, items in (('missing in checkpoint', missing), ('unexpected in checkpoint', unexpected),
                         ('shape mismatch', shapes)):
        if items:
            more = f' ... (+{len(items) - 5} more)' if len(items) > 5 else ''
            lines.append(f'{title} ({len(items)}): {items[:5]}{more}')
    raise CheckpointMismatchError('\n'.join(lines))


def read_checkpoint(filename: str, map_location='cpu'):
    """Load a checkpoint file with weights-only semantics, turning unreadable files into a clear error."""
    try:
        return _load_checkpoint(filename, map_location=map_location)
    except FileNotFoundError:
        raise
    except Exception as e:  # corrupt/truncated zip, pickle refusing code (weights_only), ...
        raise CheckpointMismatchError(f'cannot read checkpoint {filename!r}: {type(e).__name__}: {e}') from e


def prepare_state_dict(model: nn.Module, checkpoint, prefix: Optional[str] = None, pad_std: float = 1e-7,
                       pad_seed: int = 0) -> Dict[str, Tensor]:
    """Convert, kernel-pad to ``model.kernel_size`` and check a checkpoint for ``model`` (a ``RevCol``)."""
    state_dict = to_revcol_state_dict(checkpoint, prefix)
    state_dict, _ = pad_kernels(state_dict, model.kernel_size, pad_std, pad_seed)
    check_state_dict(model, state_dict)
    return state_dict


def load_pretrained(model: nn.Module, filename: str, prefix: Optional[str] = None, map_location='cpu') -> None:
    """``init_cfg=dict(type='Pretrained')`` for RevCol: any official layout, strict, kernel-padded."""
    checkpoint = read_checkpoint(filename, map_location)
    state_dict = prepare_state_dict(model, checkpoint, prefix, getattr(model, 'kernel_pad_std', 1e-7))
    model.load_state_dict(state_dict, strict=True)
    print_log(f'RevCol: loaded {len(state_dict)} tensors from {filename}', logger='current')
