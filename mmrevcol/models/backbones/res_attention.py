"""Residual Attention Network (Wang et al., CVPR 2017, https://arxiv.org/abs/1704.06904).

Stacked Attention Modules. Each module runs ``p`` pre-activation bottleneck units, then splits into

- a trunk branch ``T(x)``: ``t`` units;
- a soft mask branch ``M(x)``: bottom-up max-pooling (3x3, stride 2) with ``r`` units after each pooling (``2r`` at
  the lowest resolution), skip units between the bottom-up and the top-down parts, top-down bilinear up-sampling
  with ``r`` units after each, then BN-ReLU-1x1 conv twice and the attention activation,

and outputs ``H = (1 + M(x)) * T(x)`` (attention residual learning) followed by ``p`` units. The mask of the module
at stride 4/8/16 pools 3/2/1 times, so every mask reaches stride 32 (7x7 at 224x224).

No library (mmpretrain, timm, torchvision) ships this network; the bottleneck units are the pre-activation ones
of He et al. 2016 (``BN-ReLU-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1``, projection on the activated input).
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .base import BaseBackbone

ATTENTIONS = ('mixed', 'channel', 'spatial')


class PreActBottleneck(BaseModule):
    """Pre-activation bottleneck residual unit (expansion 4).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels; the bottleneck has ``out_channels // 4``.
        stride (int): Stride of the 3x3 conv (and of the projection). Defaults to 1.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        with_cp (bool): Gradient checkpointing of the unit. Defaults to False.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        mid = out_channels // 4
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, in_channels)[1]
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, mid)[1]
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.norm3 = build_norm_layer(norm_cfg, mid)[1]
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        # The projection reads the activated input, so the identity path of a changing unit is normalised too.
        self.downsample = (nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
                           if in_channels != out_channels or stride != 1 else None)

    def _forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.norm1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.norm2(out)))
        out = self.conv3(F.relu(self.norm3(out)))
        return out + shortcut

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


def _units(num: int, channels: int, norm_cfg: dict, with_cp: bool) -> nn.Sequential:
    return nn.Sequential(*[PreActBottleneck(channels, channels, norm_cfg=norm_cfg, with_cp=with_cp)
                           for _ in range(num)])


def attention_activation(x: Tensor, kind: str) -> Tensor:
    """The paper's three mask activations (Sec. 3.2 / Table 1).

    ``mixed``: sigmoid per channel and position; ``channel``: L2 normalisation over the channels at each
    position; ``spatial``: each channel's map standardised over the positions, then sigmoid.
    """
    if kind == 'mixed':
        return torch.sigmoid(x)
    if kind == 'channel':
        return F.normalize(x, p=2, dim=1)
    if kind == 'spatial':
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True)
        return torch.sigmoid((x - mean) / (std + 1e-5))
    raise ValueError(f'attention must be one of {ATTENTIONS}, got {kind!r}')


class AttentionModule(BaseModule):
    """One Attention Module: ``H = (1 + M(x)) * T(x)`` between ``p`` pre and ``p`` post units.

    Args:
        channels (int): Channels (unchanged by the module).
        num_downsamples (int): Max-poolings of the mask branch (3/2/1 at stride 4/8/16 in the paper).
        p (int): Units before the split and after the merge. Defaults to 1.
        t (int): Units of the trunk branch. Defaults to 2.
        r (int): Units between adjacent poolings / up-samplings of the mask branch. Defaults to 1.
        attention (str): ``'mixed'``, ``'channel'`` or ``'spatial'``. Defaults to ``'mixed'``.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        with_cp (bool): Gradient checkpointing of the units. Defaults to False.
    """

    def __init__(self, channels: int, num_downsamples: int, p: int = 1, t: int = 2, r: int = 1,
                 attention: str = 'mixed', norm_cfg: dict = dict(type='BN'), with_cp: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg)
        if attention not in ATTENTIONS:
            raise ValueError(f'attention must be one of {ATTENTIONS}, got {attention!r}')
        if num_downsamples < 1:
            raise ValueError(f'num_downsamples must be >= 1, got {num_downsamples}')
        self.attention = attention
        self.pre = _units(p, channels, norm_cfg, with_cp)
        self.trunk = _units(t, channels, norm_cfg, with_cp)
        # bottom-up: r units after each pooling, 2r at the lowest resolution (r down + r up without a skip)
        self.down = nn.ModuleList([
            _units(2 * r if i == num_downsamples - 1 else r, channels, norm_cfg, with_cp)
            for i in range(num_downsamples)
        ])
        # skips from every bottom-up resolution but the lowest to the top-down part at the same resolution
        self.skips = nn.ModuleList([_units(1, channels, norm_cfg, with_cp) for _ in range(num_downsamples - 1)])
        self.up = nn.ModuleList([_units(r, channels, norm_cfg, with_cp) for _ in range(num_downsamples - 1)])
        self.mask_head = nn.Sequential(
            build_norm_layer(norm_cfg, channels)[1], nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False),
            build_norm_layer(norm_cfg, channels)[1], nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False))
        self.post = _units(p, channels, norm_cfg, with_cp)

    def mask(self, x: Tensor) -> Tensor:
        """Soft mask ``M(x)`` (after the activation), same shape as ``x``."""
        feats = []
        m = x
        for down in self.down:
            m = down(F.max_pool2d(m, kernel_size=3, stride=2, padding=1))
            feats.append(m)
        for i in reversed(range(len(self.skips))):
            # explicit sizes: odd maps (e.g. 7 -> 4 -> 7) round-trip exactly
            m = F.interpolate(m, size=feats[i].shape[-2:], mode='bilinear', align_corners=False)
            m = self.up[i](m + self.skips[i](feats[i]))
        m = F.interpolate(m, size=x.shape[-2:], mode='bilinear', align_corners=False)
        return attention_activation(self.mask_head(m), self.attention)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre(x)
        trunk = self.trunk(x)
        return self.post((1 + self.mask(x)) * trunk)


@MODELS.register_module()
class ResidualAttentionNet(BaseBackbone):
    """Residual Attention Network backbone (Attention-56 / Attention-92).

    Stem (7x7 conv stride 2, BN, ReLU, 3x3 max-pool stride 2), then four stages at strides 4/8/16/32. Stage
    ``i < 3`` is a (down-sampling, except stage 0) residual unit followed by ``num_modules[i]`` Attention Modules
    whose masks pool ``mask_downsamples[i]`` times; stage 3 is ``num_last_units`` residual units, then BN-ReLU.
    The paper's classification network adds global average pooling and a linear layer (e.g. mmpretrain's
    ``ImageClassifier`` with ``GlobalAveragePooling`` and ``LinearClsHead``).

    Args:
        arch (str | int | dict): ``56`` / ``'56'`` / ``'attention-56'`` (1/1/1 modules) or ``92`` / ``'attention-92'``
            (1/2/3 modules), or a dict with keys ``num_modules`` and optionally ``stem_channels``, ``channels``
            (4 stage widths), ``p``, ``t``, ``r``, ``mask_downsamples``, ``num_last_units`` (defaults: the paper's
            ImageNet setting). Defaults to ``'56'``.
        attention (str): Mask activation: ``'mixed'``, ``'channel'`` or ``'spatial'``. Defaults to ``'mixed'``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to output (0-3, strides 4/8/16/32). Defaults to ``(3, )``.
        frozen_stages (int): Stages to freeze (eval mode, no gradients): -1 none, 0 the stem, ``n`` the stem and
            stages 0..n-1. Defaults to -1.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep the BN layers in eval mode during training. Defaults to False.
        with_cp (bool): Gradient checkpointing of every residual unit. Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=..., prefix=...)`` loads strictly through
            :func:`mmrevcol.checkpoint.load_pretrained`; None: Kaiming-normal convs, unit BN. Defaults to None.
    """
    arch_settings = {
        '56': dict(num_modules=(1, 1, 1)),
        '92': dict(num_modules=(1, 2, 3)),
    }
    default_arch = dict(stem_channels=64, channels=(256, 512, 1024, 2048), p=1, t=2, r=1,
                        mask_downsamples=(3, 2, 1), num_last_units=3)
    arch_required = ('num_modules', )
    arch_optional = tuple(default_arch)
    num_stages = 4

    def __init__(self,
                 arch: Union[str, Dict] = '56',
                 attention: str = 'mixed',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, init_cfg=init_cfg)
        self.arch = self.parse_arch(arch)
        a = self.arch
        self.attention = attention
        self.channels = tuple(a['channels'])

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, a['stem_channels'], 7, stride=2, padding=3, bias=False),
            build_norm_layer(norm_cfg, a['stem_channels'])[1], nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.stages = nn.ModuleList()
        prev = a['stem_channels']
        for i, c in enumerate(self.channels):
            stride = 1 if i == 0 else 2
            blocks = [PreActBottleneck(prev, c, stride=stride, norm_cfg=norm_cfg, with_cp=with_cp)]
            if i < self.num_stages - 1:
                blocks += [
                    AttentionModule(c, a['mask_downsamples'][i], a['p'], a['t'], a['r'], attention, norm_cfg,
                                    with_cp) for _ in range(a['num_modules'][i])
                ]
            else:
                blocks += [PreActBottleneck(c, c, norm_cfg=norm_cfg, with_cp=with_cp)
                           for _ in range(a['num_last_units'] - 1)]
            self.stages.append(nn.Sequential(*blocks))
            prev = c
        # pre-activation units leave their sum un-normalised: the last stage gets the network's final BN-ReLU
        # (timm's ResNetV2 does the same for features_only), the intermediate outputs are the raw unit sums
        self.norm_out = build_norm_layer(norm_cfg, self.channels[-1])[1]
        self._freeze_stages()

    @classmethod
    def parse_arch(cls, arch: Union[str, int, Dict]) -> Dict:
        """Full arch dict from a name (``56``, ``'56'``, ``'attention-56'``, ``'Attention92'``) or a partial dict."""
        if isinstance(arch, str):  # 'attention-56', 'Attention92' -> '56', '92'
            arch = arch.lower().replace('attention', '').strip('-_ ')
        arch = cls.resolve_arch(arch)
        full = dict(copy.deepcopy(cls.default_arch), **copy.deepcopy(dict(arch)))
        if len(full['channels']) != cls.num_stages or len(full['num_modules']) != cls.num_stages - 1 \
                or len(full['mask_downsamples']) != cls.num_stages - 1:
            raise ValueError('arch needs 4 channels, 3 num_modules and 3 mask_downsamples')
        if any(c % 4 for c in full['channels']):
            raise ValueError(f'channels must be multiples of 4 (bottleneck expansion), got {full["channels"]}')
        return full

    # ---------------------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == self.num_stages - 1:
                x = F.relu(self.norm_out(x))
            if i in self.out_indices:
                outs.append(x.contiguous())  # NCHW-contiguous (mmcv's CPU RoIAlign assumes it)
        return tuple(outs)

    def stem_modules(self) -> List[nn.Module]:
        return [self.stem]

    def stage_modules(self, index: int) -> List[nn.Module]:
        return [self.stages[index]] + ([self.norm_out] if index == self.num_stages - 1 else [])

    def init_from_scratch(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------------------------------------------------
    def num_layer_ids(self, decay_type: str = 'layer_wise') -> int:
        """Stem, one id per residual unit / Attention Module of the stages, and one for everything else."""
        return sum(len(s) for s in self.stages) + 2

    def layer_id(self, name: str, decay_type: str) -> int:
        """Stem 0; block ``j`` of stage ``i`` (a residual unit or a whole Attention Module)
        ``1 + sum(len(stages[:i])) + j``; ``norm_out`` and anything else the last id."""
        if name.startswith('stem.'):
            return 0
        if name.startswith('stages.'):
            stage, block = (int(v) for v in name.split('.')[1:3])
            return 1 + sum(len(s) for s in self.stages[:stage]) + block
        return self.num_layer_ids(decay_type) - 1
