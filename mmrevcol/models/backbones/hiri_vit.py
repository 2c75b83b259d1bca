"""HIRI-ViT: Scaling Vision Transformer with High Resolution Inputs (Yao et al., TPAMI 2024, arXiv 2403.11999).

A five-stage CNN+ViT hybrid for 448x448 inputs at about the cost of a four-stage one at 224x224. Early
convolutions are split into two parallel branches: a cheap high-resolution branch (one depthwise conv) and a richer
low-resolution branch (downsample first, then the heavy convs), added back together::

    image 448x448x3
      HRStem   conv3x3/2 -> { HR: dw3x3 -> conv3x3/2 | LR: conv3x3/2 -> conv3x3 -> conv1x1 } -> sum -> BN   /4
      stage 1  HRBlock x d1                                      (BN)         112x112  C1
      IRDSa    conv3x3/2 (expand) -> conv1x1 (compress)
      stage 2  HRBlock x d2                                      (BN)          56x56   C2
      IRDSa
      stage 3  CFFNBlock x d3                                    (BN)          28x28   C3
      IRDSb    conv1x1 (expand) -> dw3x3/2 -> conv1x1 (+ avg-pool/conv1x1 shortcut)
      stage 4  TransformerBlock x d4  (MHA, keys/values / sr)    (LN; BN in the CFFN)   14x14  C4
      IRDSb
      stage 5  TransformerBlock x d5                             (LN; BN in the CFFN)    7x7   C5

No official code exists; Table 1 of the paper (widths/depths/heads/expansions) is not in the text available to
this project, so :attr:`HIRIViT.arch_settings` are this implementation's choice, made to meet the published costs
(HIRI-ViT-S at 448^2: 5.0 GFLOPs). ``docs/hiri_vit.md`` lists what the paper fixes and what was chosen, and why.

The building blocks are also usable on their own (``stem='conv'``, four stages, ``block_types``) to rebuild the
paper's ablation path (M-ViT -> five stages -> HR-stem -> HR-blocks); see ``tools/analysis/hiri_vit_ablation.py``.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model.weight_init import trunc_normal_
from mmengine.registry import MODELS
from torch import Tensor, nn

from ..layers.norm import LayerNorm2d
from .base import BaseBackbone

BLOCK_TYPES = ('hr', 'cffn', 'transformer')
DOWNSAMPLE_TYPES = ('irds_a', 'irds_b')
STEM_TYPES = ('hr', 'conv')


# ---------------------------------------------------------------------------------------------------------------
# small helpers
def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
            act: bool = False) -> nn.Sequential:
    """``Conv (no bias) -> BN [-> GELU]``, 'same' padding for odd kernels (output ``ceil(size / stride)``)."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
                        bias=False),
              nn.BatchNorm2d(out_channels)]
    if act:
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------------------------
# stems
class HRStem(nn.Module):
    """High-resolution stem (paper Sec. 4.1, Fig. 3c): the Conv-stem split into two parallel branches.

    ``conv3x3/2`` brings the image to stride 2; then the high-resolution branch spends little there (one depthwise
    3x3, then a strided conv to stride 4) while the low-resolution branch downsamples first (strided conv) and
    puts the 3x3 and 1x1 convs on the stride-4 map. The sum is normalised with BN. Output stride 4.

    Args:
        in_channels (int): Image channels.
        stem_channels (int): Channels of the stride-2 map.
        out_channels (int): Output channels (C1).
    """

    def __init__(self, in_channels: int, stem_channels: int, out_channels: int):
        super().__init__()
        self.conv = conv_bn(in_channels, stem_channels, 3, stride=2, act=True)
        self.hr_branch = nn.Sequential(
            conv_bn(stem_channels, stem_channels, 3, groups=stem_channels),
            nn.Conv2d(stem_channels, out_channels, 3, stride=2, padding=1))
        self.lr_branch = nn.Sequential(
            conv_bn(stem_channels, out_channels, 3, stride=2, act=True),
            conv_bn(out_channels, out_channels, 3, act=True),
            nn.Conv2d(out_channels, out_channels, 1))
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return self.norm(self.hr_branch(x) + self.lr_branch(x))


class ConvStem(nn.Module):
    """Conv-stem (Fig. 3b), the single-branch baseline of the ablation: the same convs as :class:`HRStem`, but the
    3x3 conv runs on the stride-2 map, which is what makes it expensive at 448^2.

    ``conv3x3/2 -> conv3x3 -> conv3x3/2 -> conv1x1``, BN (+ GELU but the last). Output stride 4.
    """

    def __init__(self, in_channels: int, stem_channels: int, out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            conv_bn(in_channels, stem_channels, 3, stride=2, act=True),
            conv_bn(stem_channels, stem_channels, 3, act=True),
            conv_bn(stem_channels, out_channels, 3, stride=2, act=True),
            conv_bn(out_channels, out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


# ---------------------------------------------------------------------------------------------------------------
# blocks
class HRBlock(nn.Module):
    """High-resolution block (Sec. 4.2, Fig. 4) of stages 1-2: two parallel branches and a residual.

    ``x + DropPath(HR(x) + Up(LR(x)))`` with ``HR = DWConv3x3`` on the full-resolution map and
    ``LR = FC(GELU(FC(BN(DWConv3x3/2(x)))))`` on the half-resolution map, upsampled by repetition (nearest) to
    ``x``'s exact size, so odd sizes work.

    Args:
        channels (int): Channels in and out.
        expansion (float): Hidden width of the low-resolution FFN, as a multiple of ``channels``.
        drop_path (float): Stochastic depth rate of the block.
    """

    def __init__(self, channels: int, expansion: float = 4., drop_path: float = 0.):
        super().__init__()
        hidden = int(channels * expansion)
        self.hr_dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.lr_dw = conv_bn(channels, channels, 3, stride=2, groups=channels)
        self.lr_ffn = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        hr = self.hr_dw(x)
        lr = self.lr_ffn(self.lr_dw(x))
        lr = F.interpolate(lr, size=x.shape[-2:], mode='nearest')
        return x + self.drop_path(hr + lr)


class CFFN(nn.Module):
    """Convolutional FFN (Sec. 3): ``CFFN(X) = FC(DWConv(z) + z), z = GELU(FC(X))`` on an ``(N, C, H, W)`` map
    (FC = 1x1 conv).

    Args:
        channels (int): Channels in and out.
        expansion (float): Hidden width as a multiple of ``channels`` (E_i).
    """

    def __init__(self, channels: int, expansion: float = 4.):
        super().__init__()
        hidden = int(channels * expansion)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        z = self.act(self.fc1(x))
        return self.fc2(self.dwconv(z) + z)


class CFFNBlock(nn.Module):
    """``x + DropPath(CFFN(BN(x)))``: the attention-free block of stage 3 (BN, not LN: Sec. 4.4)."""

    def __init__(self, channels: int, expansion: float = 4., drop_path: float = 0.):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.cffn = CFFN(channels, expansion)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.cffn(self.norm(x)))


class Attention(nn.Module):
    """Multi-head self-attention with optional spatial reduction of keys/values (PVT): a ``sr x sr`` strided conv
    + LN before the key/value projection. The map is zero-padded to a multiple of ``sr`` first, so any size works.

    Written with explicit matmuls (not ``scaled_dot_product_attention``) so that FLOP counters see the
    ``O(n^2)`` part.

    Args:
        dim (int): Token channels.
        num_heads (int): Heads (``dim % num_heads == 0``).
        sr_ratio (int): Spatial reduction of keys/values; 1 = none.
        qkv_bias (bool): Bias in the q/kv projections.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int = 1, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, c // heads).transpose(1, 2)
        if self.sr_ratio > 1:
            h, w = hw
            kv_in = x.transpose(1, 2).reshape(b, c, h, w)
            pad_h, pad_w = (-h) % self.sr_ratio, (-w) % self.sr_ratio
            kv_in = F.pad(kv_in, (0, pad_w, 0, pad_h))
            kv_in = self.sr_norm(self.sr(kv_in).flatten(2).transpose(1, 2))
        else:
            kv_in = x
        k, v = self.kv(kv_in).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    """Block of stages 4-5: ``x + DropPath(MHA(LN(x)))`` on tokens, then ``x + DropPath(CFFN(BN(x)))`` on the map
    (every CFFN is BN-normalised, Sec. 4.4).

    Args:
        channels (int): Channels.
        num_heads (int): Attention heads (HD_i).
        expansion (float): CFFN expansion (E_i).
        sr_ratio (int): Spatial reduction of keys/values.
        drop_path (float): Stochastic depth rate of the block.
    """

    def __init__(self, channels: int, num_heads: int, expansion: float = 4., sr_ratio: int = 1,
                 drop_path: float = 0.):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels, eps=1e-6)
        self.attn = Attention(channels, num_heads, sr_ratio)
        self.norm2 = nn.BatchNorm2d(channels)
        self.cffn = CFFN(channels, expansion)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.drop_path(self.attn(self.norm1(t), (h, w)))
        x = t.transpose(1, 2).reshape(b, c, h, w)
        return x + self.drop_path(self.cffn(self.norm2(x)))


# ---------------------------------------------------------------------------------------------------------------
# downsampling between stages
class IRDSa(nn.Module):
    """Inverted-residual downsampling a (Sec. 4.3, Fig. 5b), after stages 1 and 2: a strided 3x3 conv expands the
    channels and halves the size, a 1x1 conv compresses them. BN (+ GELU after the first conv).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        expansion (float): Hidden channels as a multiple of ``in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: float = 4.):
        super().__init__()
        hidden = int(in_channels * expansion)
        self.expand = conv_bn(in_channels, hidden, 3, stride=2, act=True)
        self.compress = conv_bn(hidden, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.compress(self.expand(x))


class IRDSb(nn.Module):
    """Inverted-residual downsampling b (Fig. 5c), for the last two downsamplings: ``1x1 expand -> BN -> GELU ->
    dw3x3/2 -> 1x1 project`` (norm and activation only after the first conv), plus a downsampling shortcut
    (2x2 average pool, ceil mode so odd sizes match the strided conv, then a 1x1 conv) that stabilises training.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        expansion (float): Hidden channels as a multiple of ``in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: float = 4.):
        super().__init__()
        hidden = int(in_channels * expansion)
        self.expand = conv_bn(in_channels, hidden, 1, act=True)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, stride=2, padding=1, groups=hidden)
        self.project = nn.Conv2d(hidden, out_channels, 1)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.dwconv(self.expand(x))) + self.shortcut(x)


# ---------------------------------------------------------------------------------------------------------------
class HIRIStage(nn.Module):
    """One stage: the downsampling that enters it (``nn.Identity`` for stage 1, which the stem feeds) + blocks."""

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)


def _norm_of(block_type: str, channels: int) -> nn.Module:
    # BN for the high-resolution (convolutional) stages, LN for the attention stages (Sec. 4.4)
    return LayerNorm2d(channels, eps=1e-6) if block_type == 'transformer' else nn.BatchNorm2d(channels)


@MODELS.register_module()
class HIRIViT(BaseBackbone):
    """HIRI-ViT backbone for mmdet, mmseg and mmpretrain.

    Args:
        arch (str | dict): ``'s'``, ``'b'``, ``'l'`` (``'small'``, ``'base'``, ``'large'``) or a dict with
            ``channels``, ``depths``, ``expansions``, ``num_heads``, ``sr_ratios`` (one value per stage; heads are
            ignored by non-attention stages) and optionally ``block_types`` (default
            ``('hr', 'hr', 'cffn', 'transformer', 'transformer')``), ``downsamples`` (one per stage boundary,
            default ``irds_a`` then ``irds_b`` for the last two), ``stem`` (``'hr'`` or ``'conv'``),
            ``stem_channels`` and ``ds_expansions`` (hidden width of each IRDS as a multiple of its input
            channels; default 2 for IRDS-a, 4 for IRDS-b). Any number of stages >= 2 builds
            (the ablation's four-stage M-ViT is ``block_types=('cffn', 'cffn', 'transformer', 'transformer')``).
            Defaults to 's'.
        in_channels (int): Image channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages to return (0-based; negative counts from the end). Strides are
            ``4 * 2**i``; at 448^2 the detectors of the paper use stages 1-4 (strides 8-64). Defaults to -1.
        frozen_stages (int): -1 freezes nothing; 0 the stem; ``k >= 1`` the stem and stages ``0..k-1`` (with the
            downsampling that enters them and their output norms; put in eval mode). Defaults to -1.
        drop_path_rate (float): Stochastic depth, ``linspace(0, rate, sum(depths))`` over the blocks.
            Defaults to 0.
        with_cp (bool): Checkpoint each block in training (recompute it in backward). Defaults to False.
        norm_eval (bool): Keep the BN layers in eval mode while training (detection fine-tuning with small
            batches). Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH[, prefix='backbone.'])`` loads a
            checkpoint strictly through :func:`mmrevcol.checkpoint.load_pretrained`. None: trunc-normal(0.02)
            linears, He-normal (fan-out) convs.
    """
    arch_settings: Dict[str, dict] = {
        # See docs/hiri_vit.md for the reasoning; S is tuned to 5.0 GMACs at 448^2 (mmengine's counter).
        'small': dict(channels=[32, 64, 128, 320, 448], depths=[2, 4, 4, 9, 3], expansions=[16, 16, 8, 4, 4],
                      num_heads=[0, 0, 0, 5, 7], sr_ratios=[1, 1, 1, 1, 1], stem_channels=32),
        'base': dict(channels=[48, 96, 192, 384, 512], depths=[2, 4, 6, 12, 3], expansions=[16, 16, 8, 4, 4],
                     num_heads=[0, 0, 0, 6, 8], sr_ratios=[1, 1, 1, 1, 1], stem_channels=32),
        'large': dict(channels=[64, 128, 256, 512, 640], depths=[2, 4, 8, 16, 4], expansions=[16, 16, 8, 4, 4],
                      num_heads=[0, 0, 0, 8, 10], sr_ratios=[1, 1, 1, 1, 1], stem_channels=48),
    }
    arch_aliases = {'s': 'small', 'b': 'base', 'l': 'large'}
    arch_required = ('channels', 'depths', 'expansions', 'num_heads', 'sr_ratios')
    arch_optional = ('block_types', 'downsamples', 'stem', 'stem_channels', 'ds_expansions')

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 frozen_stages: int = -1,
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 norm_eval: bool = False,
                 init_cfg: Optional[dict] = None):
        arch = self.parse_arch(arch)
        self.num_stages = len(arch['channels'])  # any number of stages >= 2 (the ablation's M-ViT has 4)
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, init_cfg=init_cfg)
        self.arch = a = arch
        self.channels: List[int] = list(a['channels'])
        self.depths: List[int] = list(a['depths'])
        self.block_types: List[str] = list(a['block_types'])
        self.drop_path_rate = drop_path_rate

        stem_cls = HRStem if a['stem'] == 'hr' else ConvStem
        self.stem = stem_cls(in_channels, a['stem_channels'], self.channels[0])
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths), device='cpu').tolist()
        self.stages = nn.ModuleList()
        for i, (channels, depth, block_type) in enumerate(zip(self.channels, self.depths, self.block_types)):
            if i == 0:
                downsample = nn.Identity()
            else:
                ds_cls = IRDSa if a['downsamples'][i - 1] == 'irds_a' else IRDSb
                downsample = ds_cls(self.channels[i - 1], channels, a['ds_expansions'][i - 1])
            rates = dpr[sum(self.depths[:i]):sum(self.depths[:i + 1])]
            blocks = [self._make_block(block_type, channels, a['expansions'][i], a['num_heads'][i],
                                       a['sr_ratios'][i], rate) for rate in rates]
            self.stages.append(HIRIStage(downsample, blocks))
        for i in self.out_indices:
            self.add_module(f'norm{i}', _norm_of(self.block_types[i], self.channels[i]))
        self._freeze_stages()

    @staticmethod
    def _make_block(block_type: str, channels: int, expansion: float, num_heads: int, sr_ratio: int,
                    drop_path: float) -> nn.Module:
        if block_type == 'hr':
            return HRBlock(channels, expansion, drop_path)
        if block_type == 'cffn':
            return CFFNBlock(channels, expansion, drop_path)
        return TransformerBlock(channels, num_heads, expansion, sr_ratio, drop_path)

    # ---------------------------------------------------------------------------------------------------------
    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        """Full arch dict (defaults filled in, validated) from a name or a (partial) dict."""
        arch = cls.resolve_arch(arch)
        n = len(arch['channels'])
        if n < 2:
            raise ValueError(f'HIRI-ViT needs at least 2 stages, got channels={arch["channels"]}')
        default_blocks = ['hr'] * max(n - 3, 0) + ['cffn'] + ['transformer'] * 2 if n >= 3 else ['transformer'] * n
        arch.setdefault('block_types', default_blocks[-n:])
        arch.setdefault('downsamples', ['irds_a'] * max(n - 3, 0) + ['irds_b'] * min(n - 1, 2))
        arch.setdefault('stem', 'hr')
        arch.setdefault('stem_channels', arch['channels'][0])
        # 3x3 dense convs cost 9x a 1x1 per channel: IRDS-a expands less than the inverted-residual IRDS-b
        arch.setdefault('ds_expansions', [2 if d == 'irds_a' else 4 for d in arch['downsamples']])
        for key in ('channels', 'depths', 'expansions', 'num_heads', 'sr_ratios', 'block_types'):
            if len(arch[key]) != n:
                raise ValueError(f'arch[{key!r}] must have {n} entries (one per stage), got {arch[key]}')
        for key in ('downsamples', 'ds_expansions'):
            if len(arch[key]) != n - 1:
                raise ValueError(f'arch[{key!r}] must have {n - 1} entries (one per stage boundary), '
                                 f'got {arch[key]}')
        for key, allowed in (('block_types', BLOCK_TYPES), ('downsamples', DOWNSAMPLE_TYPES)):
            bad = [v for v in arch[key] if v not in allowed]
            if bad:
                raise ValueError(f'arch[{key!r}] entries must be in {allowed}, got {bad}')
        if arch['stem'] not in STEM_TYPES:
            raise ValueError(f"arch['stem'] must be in {STEM_TYPES}, got {arch['stem']!r}")
        for key in ('channels', 'depths', 'sr_ratios'):
            if not all(isinstance(v, int) and v > 0 for v in arch[key]):
                raise ValueError(f'arch[{key!r}] must be positive ints, got {arch[key]}')
        for c, h, t in zip(arch['channels'], arch['num_heads'], arch['block_types']):
            if t == 'transformer' and (h <= 0 or c % h):
                raise ValueError(f'a transformer stage needs num_heads > 0 dividing its channels, got C={c}, '
                                 f'heads={h}')
        return arch

    # ---------------------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage.downsample(x)
            for block in stage.blocks:
                if self.with_cp and self.training and torch.is_grad_enabled():
                    x = cp.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            if i in self.out_indices:
                # NCHW-contiguous (the transformer stages' permutes would otherwise leak strided views)
                outs.append(getattr(self, f'norm{i}')(x).contiguous())
        return tuple(outs)

    # ---------------------------------------------------------------------------------------------------------
    def stem_modules(self) -> List[nn.Module]:
        return [self.stem]

    def stage_modules(self, index: int) -> List[nn.Module]:
        norm = getattr(self, f'norm{index}', None)
        return [self.stages[index]] + ([norm] if norm is not None else [])

    def init_from_scratch(self) -> None:
        # PVT / Wave-ViT initialisation (the hybrid family the paper builds on)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------------------------------------------------
    decay_types = ('layer_wise', 'stage_wise')

    def num_layer_ids(self, decay_type: str = 'layer_wise') -> int:
        """``layer_wise``: stem, one per block, everything after the backbone; ``stage_wise``: stem, one per stage,
        the rest."""
        return sum(self.depths) + 2 if decay_type == 'layer_wise' else self.num_stages + 2

    def layer_id(self, name: str, decay_type: str) -> int:
        """``layer_wise``: stem 0; block ``j`` of stage ``i`` ``sum(depths[:i]) + j + 1``; the downsampling that
        enters stage ``i`` goes with its first block, the output norm ``norm{i}`` with its last block. ``stage_wise``:
        stem 0, stage ``i`` (downsampling, blocks, norm) ``i + 1``. Anything else the last id."""
        parts = name.split('.')
        if parts[0] == 'stem':
            return 0
        if parts[0] == 'stages':
            stage = int(parts[1])
            block = int(parts[3]) if parts[2] == 'blocks' else 0
        elif parts[0].startswith('norm') and parts[0][4:].isdigit():
            stage = int(parts[0][4:])
            block = self.depths[stage] - 1
        else:
            return self.num_layer_ids(decay_type) - 1
        if decay_type == 'stage_wise':
            return stage + 1
        return sum(self.depths[:stage]) + block + 1
