"""Heads of official RevCol classification checkpoints -> ``RevColClassifier`` keys.

The backbone part of a checkpoint goes through the ``RevCol`` layout (:mod:`mmrevcol.checkpoint.revcol`), strictly.
This module maps what the official ``FullNet`` keeps beside it, where it corresponds to our heads::

    cls_blocks.{k}.classifier.0.*   (LayerNorm)      head.norm.* (k last)  /  aux_heads.{k}.norm.*
    cls_blocks.{k}.classifier.1.*   (Linear)         head.fc.*   (k last)  /  aux_heads.{k}.fc.*
    cls.classifier.{0,1}.*          (no inter. sup.) head.{norm,fc}.*
    decoder_blocks.{k}.proj_layers.{i}.{0,1}.*       decoders.{k}.proj_layers.{i}.{0,1}.*
    decoder_blocks.{k}.normal_layers.{i}.{b}.{dwconv,norm,pwconv1,pwconv2,gamma}
                                                     decoders.{k}.normal_layers.{i}.{b}.{depthwise_conv,norm,
                                                     pointwise_conv1,pointwise_conv2,gamma}
    decoder_blocks.{k}.projback.0.*                  decoders.{k}.projback.0.*

Official intermediate heads sit every ``num_columns // 4`` columns (always 4 classifiers, 3 decoders); they are
mapped by index when the classifier has as many, otherwise only the final classifier is. Keys of our own
``RevColClassifier`` checkpoints (``head.``, ``aux_heads.``, ``decoders.``) pass through unchanged. Pure functions.
"""
import re
from typing import Dict, List, Mapping, Tuple

from torch import Tensor

_CLS_BLOCK = re.compile(r'^cls_blocks\.(\d+)\.classifier\.([01])\.(.+)$')
_CLS_SINGLE = re.compile(r'^cls\.classifier\.([01])\.(.+)$')
_DECODER = re.compile(r'^decoder_blocks\.(\d+)\.(.+)$')
_OURS = re.compile(r'^(head|aux_heads\.\d+|decoders\.\d+)\.')
_HEAD_PARTS = {'0': 'norm', '1': 'fc'}
_BLOCK_RENAMES = [(re.compile(r'\.dwconv\.'), '.depthwise_conv.'), (re.compile(r'\.pwconv1\.'), '.pointwise_conv1.'),
                  (re.compile(r'\.pwconv2\.'), '.pointwise_conv2.')]


def is_head_key(key: str) -> bool:
    """Whether a (``module.``-stripped) key belongs to a classification/decoder head, official or ours."""
    return bool(_CLS_BLOCK.match(key) or _CLS_SINGLE.match(key) or _DECODER.match(key) or _OURS.match(key))


def convert_revcol_cls_heads(state_dict: Mapping[str, Tensor], num_heads: int,
                             num_decoders: int) -> Tuple[Dict[str, Tensor], List[str]]:
    """Map the head weights of a classification checkpoint to ``RevColClassifier`` keys.

    Args:
        state_dict: ``module.``-stripped weights (official ``FullNet`` or ``RevColClassifier`` layout); backbone
            keys are ignored.
        num_heads: Classification heads of the target classifier (the last one is ``head``).
        num_decoders: Image decoders of the target classifier.

    Returns:
        (mapped weights in classifier keys, head keys of the checkpoint that have no counterpart).
    """
    official_heads = {int(m.group(1)) for k in state_dict for m in [_CLS_BLOCK.match(k)] if m}
    official_decoders = {int(m.group(1)) for k in state_dict for m in [_DECODER.match(k)] if m}
    by_index = len(official_heads) == num_heads
    last = max(official_heads) if official_heads else -1
    mapped: Dict[str, Tensor] = {}
    unmapped: List[str] = []
    for key, value in state_dict.items():
        new = None
        m = _CLS_BLOCK.match(key)
        if m:
            k, part, rest = int(m.group(1)), _HEAD_PARTS[m.group(2)], m.group(3)
            if k == last:
                new = f'head.{part}.{rest}'
            elif by_index:
                new = f'aux_heads.{k}.{part}.{rest}'
        elif _CLS_SINGLE.match(key):
            m = _CLS_SINGLE.match(key)
            new = f'head.{_HEAD_PARTS[m.group(1)]}.{m.group(2)}'
        elif _DECODER.match(key):
            m = _DECODER.match(key)
            if len(official_decoders) == num_decoders:
                new = f'decoders.{m.group(1)}.{m.group(2)}'
                for pattern, repl in _BLOCK_RENAMES:
                    new = pattern.sub(repl, new)
        elif _OURS.match(key):
            new = key
        else:
            continue  # backbone (or unrelated) key: not ours to map
        if new is None:
            unmapped.append(key)
        else:
            mapped[new] = value
    return mapped, unmapped
