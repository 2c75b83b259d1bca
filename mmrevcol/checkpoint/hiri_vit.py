"""``HIRIViT`` checkpoints: no official release exists, so the only layout is this project's own (identity keys).

``convert`` keeps the backbone keys (``stem.``, ``stages.``, ``norm<i>.``) and drops heads; ``adapt`` reconciles the
per-stage output norms with the model's ``out_indices``: a classifier checkpoint has ``norm4`` only, a detector
asks for ``norm1..norm4``. Norms the model has and the checkpoint lacks are new layers (kept at the model's own
init, as every pyramid backbone does when fine-tuned from ImageNet); norms the checkpoint has and the model does
not are dropped. Everything else stays strict.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Sequence

from torch import Tensor, nn

from .core import CheckpointMismatchError, Layout, register_layout

_BACKBONE_KEY = re.compile(r'^(stem|stages\.\d+|norm\d+)\.')
_NORM_KEY = re.compile(r'^norm\d+\.')
# keys no other family has: the two branches of the HR stem/blocks, the CFFN of a stage's block
_FAMILY_KEY = re.compile(r'^(stem\.(hr|lr)_branch\.|stages\.\d+\.blocks\.\d+\.(cffn|hr_dw|lr_dw|lr_ffn)\.)')


def convert_hiri_vit(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Prefix-stripped weights -> ``HIRIViT`` keys (heads dropped). Idempotent."""
    out = OrderedDict((k, v) for k, v in state_dict.items() if _BACKBONE_KEY.match(k))
    if not any(_FAMILY_KEY.match(k) for k in out):
        raise CheckpointMismatchError('no HIRIViT weights in this checkpoint (expected keys stem.*, '
                                      f'stages.<i>.blocks.<j>.*; first keys: {list(state_dict)[:5]})')
    return out


def is_hiri_vit(keys: Sequence[str]) -> bool:
    return any(_FAMILY_KEY.match(k) for k in keys)


def adapt_out_norms(state_dict: Mapping[str, Tensor], model: nn.Module) -> Dict[str, Tensor]:
    """Give the model its own init for output norms the checkpoint lacks; drop norms the model has not."""
    own = model.state_dict()
    out = OrderedDict((k, v) for k, v in state_dict.items() if not _NORM_KEY.match(k) or k in own)
    for k, v in own.items():
        if _NORM_KEY.match(k) and k not in out:
            out[k] = v
    return out


def describe_arch(state_dict: Mapping[str, Tensor]) -> dict:
    """Stages, blocks per stage and channels per stage implied by a state dict."""
    depths: Dict[int, int] = {}
    for k in state_dict:
        m = re.match(r'^stages\.(\d+)\.blocks\.(\d+)\.', k)
        if m:
            depths[int(m[1])] = max(depths.get(int(m[1]), 0), int(m[2]) + 1)
    channels = [state_dict[k].shape[0] for k in sorted(
        (k for k in state_dict if re.match(r'^stages\.\d+\.blocks\.0\.(hr_dw|norm|norm1)\.weight$', k)),
        key=lambda k: int(k.split('.')[1]))]
    return dict(depths=[depths[i] for i in sorted(depths)], channels=channels)


HIRI_VIT_LAYOUT = register_layout(Layout(name='HIRIViT', convert=convert_hiri_vit, detect=is_hiri_vit,
                                         adapt=adapt_out_norms, describe=describe_arch))
