"""``RevColViT`` checkpoints (ours: there are no official ones). Classification checkpoints of mmpretrain
(``backbone.``-prefixed, heads beside) reduce to the backbone keys; a position embedding pre-trained on another
image size is resized (bicubic) to the model's patch grid on load."""
import re
from typing import Dict, Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .core import CheckpointMismatchError, Layout, register_layout

_BACKBONE_KEY = re.compile(r'^(patch_embed\.|pos_embed$|columns\.\d+\.)')
_FAMILY_KEY = 'columns.0.levels.0.blocks.0.attn.logit_scale'


def convert_revcol_vit(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    out = {k: v for k, v in state_dict.items() if _BACKBONE_KEY.match(k)}
    if _FAMILY_KEY not in out:
        raise CheckpointMismatchError(f'no RevColViT weights in this checkpoint (no {_FAMILY_KEY}; first keys: '
                                      f'{list(state_dict)[:5]})')
    return out


def is_revcol_vit(keys: Sequence[str]) -> bool:
    return _FAMILY_KEY in keys


def resize_pos_embed(state_dict: Dict[str, Tensor], model: nn.Module) -> Dict[str, Tensor]:
    pos, own = state_dict.get('pos_embed'), getattr(model, 'pos_embed', None)
    if pos is not None and own is not None and pos.dim() == 4 and pos.shape[:2] == own.shape[:2] \
            and pos.shape[-2:] != own.shape[-2:]:
        state_dict = dict(state_dict)
        state_dict['pos_embed'] = F.interpolate(pos.float(), size=own.shape[-2:], mode='bicubic',
                                                align_corners=False).to(pos.dtype)
    return state_dict


def describe_revcol_vit(state_dict: Mapping[str, Tensor]) -> dict:
    columns = {int(m.group(1)) for k in state_dict for m in [re.match(r'^columns\.(\d+)\.', k)] if m}
    layers = [len({m.group(1) for k in state_dict for m in [re.match(rf'^columns\.0\.levels\.{lv}\.blocks\.(\d+)\.', k)]
                   if m}) for lv in range(4)]
    pos = state_dict.get('pos_embed')
    return dict(embed_dims=None if pos is None else int(pos.shape[1]), layers=layers, num_columns=len(columns),
                grid=None if pos is None else tuple(pos.shape[-2:]))


REVCOL_VIT_LAYOUT = register_layout(Layout(name='RevColViT', convert=convert_revcol_vit, detect=is_revcol_vit,
                                           adapt=resize_pos_embed, describe=describe_revcol_vit))
