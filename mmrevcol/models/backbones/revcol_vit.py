"""RevCol-ViT: reversible columns of plain ViT blocks (RevCol paper, appendix B.1).

Isotropic: a patch embedding (stride 16) feeds N columns of 4 levels that all keep the patch grid's resolution and
width C. A level is a fusion (the lower level of this column and, except in the first column, the next level of the
previous column, each through a linear projection + post-LayerNorm) followed by ViT blocks with post-LayerNorm
(res-post-norm) and normalised (cosine) dot-product attention, as in Swin V2 (the paper: "similar to Liu et al.
2022a"). Column ``i > 0`` adds ``alpha_l * c_l`` of the previous column, so the columns invert exactly as RevCol's and
train with the same reversible engine (:mod:`mmrevcol.models.reversible`): activation memory independent of the
number of columns. The stream between levels is kept as (N, C, H, W) maps, the layout that engine and dense heads
expect; the blocks work on (N, H*W, C) tokens.
"""
import math
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmengine.model.weight_init import trunc_normal_
from mmengine.registry import MODELS
from torch import Tensor, nn

from ..layers.weight_init import convnext_init_
from ..reversible import column_forward
from .base import ColumnBackbone

NUM_LEVELS = 4


class CosineAttention(nn.Module):
    """Multi-head self-attention on L2-normalised queries and keys, scaled by a learnt per-head temperature
    (``exp(logit_scale)``, at most 100), as Swin V2: bounded logits keep deep post-norm stacks stable."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, max_logit_scale: float = math.log(100.)):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dims {dim} must be divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.max_logit_scale = max_logit_scale
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.)))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, length, c = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        scale = self.logit_scale.clamp(max=self.max_logit_scale).exp()
        # the temperature folded into q: one fused attention call with unit scale
        q = F.normalize(q, dim=-1) * scale.to(q.dtype)
        k = F.normalize(k, dim=-1)
        x = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return self.proj(x.transpose(1, 2).reshape(n, length, c))


class PostNormBlock(nn.Module):
    """ViT block with res-post-norm: ``x + DropPath(LN(Attn(x)))``, then ``x + DropPath(LN(MLP(x)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4., drop_path_rate: float = 0.):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.attn = CosineAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.norm1(self.attn(x)))
        return x + self.drop_path(self.norm2(self.mlp(x)))


class LinearNorm(nn.Module):
    """Linear projection + post-LayerNorm over the channels of an (N, C, H, W) map (RevCol-ViT's fusion branch)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


class ViTLevel(nn.Module):
    """Fusion (``down`` of this column's lower level; ``up`` of the previous column's next level) + ViT blocks."""

    def __init__(self, level: int, dim: int, num_blocks: int, num_heads: int, mlp_ratio: float, first: bool,
                 drop_path_rates: Sequence[float]):
        super().__init__()
        self.down = nn.Identity() if level == 0 else LinearNorm(dim)
        self.up = None if first or level == NUM_LEVELS - 1 else LinearNorm(dim)
        self.blocks = nn.Sequential(
            *[PostNormBlock(dim, num_heads, mlp_ratio, drop_path_rates[b]) for b in range(num_blocks)])

    def forward(self, down_input: Tensor, *prev_inputs: Tensor) -> Tensor:
        x = self.down(down_input)
        if self.up is not None and prev_inputs:
            x = x + self.up(prev_inputs[0])
        n, c, h, w = x.shape
        x = self.blocks(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(n, c, h, w)


class ViTColumn(nn.Module):
    """One RevCol-ViT column, with the interface of the reversible engine (``first``, ``levels``, ``alpha``,
    ``prev_inputs``)."""

    def __init__(self, dim: int, layers: Sequence[int], num_heads: int, mlp_ratio: float, first: bool,
                 drop_path_rates: Sequence[float], alpha_init: float = 0.5):
        super().__init__()
        self.first = first
        starts = [sum(layers[:level]) for level in range(NUM_LEVELS)]
        self.levels = nn.ModuleList([
            ViTLevel(level, dim, layers[level], num_heads, mlp_ratio, first,
                     drop_path_rates[starts[level]:starts[level] + layers[level]]) for level in range(NUM_LEVELS)
        ])
        self.alpha = None if first else nn.ParameterList(
            [nn.Parameter(torch.full((1, dim, 1, 1), alpha_init)) for _ in range(NUM_LEVELS)])

    def prev_inputs(self, level: int) -> Tuple[int, ...]:
        return () if self.first or level == NUM_LEVELS - 1 else (level + 1, )

    def forward(self, x: Tensor, prev: Optional[Sequence[Tensor]] = None) -> List[Tensor]:
        return column_forward(self, x, prev)


@MODELS.register_module()
class RevColViT(ColumnBackbone):
    """RevCol-ViT backbone (isotropic reversible columns of ViT blocks) for mmpretrain, mmseg and mmdet.

    Args:
        arch (str | dict): 'small' (C=224, blocks (2, 2, 2, 2), 4 heads, 4 columns) or 'base' (C=384, (3, 3, 3, 3),
            6 heads, 4 columns), or a dict with ``embed_dims``, ``layers`` (4 ints), ``num_heads``, ``num_columns``
            and optionally ``mlp_ratio`` (default 4). Defaults to 'small'.
        img_size (int | tuple): Pre-training image size; sets the position-embedding grid, interpolated (bicubic)
            for other input sizes. Defaults to 224.
        patch_size (int): Patch size (the features' stride). Defaults to 16.
        in_channels (int): Image channels. Defaults to 3.
        drop_path_rate (float): ``linspace(0, rate, sum(layers))`` by block position in a column, the same in every
            column (as RevCol). Defaults to 0.
        reversible (bool): Train with the reversible engine (activation memory independent of the number of
            columns). Defaults to False.
        with_cp (bool): With ``reversible=False``, checkpoint each column (recompute it in backward).
            Defaults to False.
        out_indices (Sequence[int]): Levels of the last column to return, all at stride ``patch_size`` (for
            classification (3, ); a dense head puts a simple feature pyramid on (0, 1, 2, 3)). Defaults to (3, ).
        frozen_stages (int): -1 freezes nothing; 0 the patch embedding and position embedding; ``k >= 1`` those
            and levels ``0..k-1`` of every column (their fusion, blocks and alpha; put in eval mode).
            Defaults to -1.
        norm_eval (bool): The base's BatchNorm switch; RevCol-ViT has only LayerNorms, so it changes nothing.
            Defaults to False.
        alpha_init (float): Initial reversible shortcut scale. Defaults to 0.5.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH[, prefix='backbone.'])`` loads a
            RevColViT (or mmpretrain classifier) checkpoint strictly, resizing the position embedding to
            ``img_size``; None gives the default init (trunc-normal 0.02, and each
            block's attention/MLP output projection scaled by ``1/sqrt(2 * depth)``, as BEiT).
    """
    arch_settings: Dict[str, dict] = {
        'small': dict(embed_dims=224, layers=[2, 2, 2, 2], num_heads=4, num_columns=4),
        'base': dict(embed_dims=384, layers=[3, 3, 3, 3], num_heads=6, num_columns=4),
    }
    arch_aliases = {'s': 'small', 'b': 'base'}
    arch_required = ('embed_dims', 'layers', 'num_heads', 'num_columns')
    arch_optional = ('mlp_ratio', )
    stem_prefixes = ('patch_embed', 'pos_embed')

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 drop_path_rate: float = 0.,
                 reversible: bool = False,
                 with_cp: bool = False,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 alpha_init: float = 0.5,
                 init_cfg: Optional[dict] = None):
        if reversible and with_cp:
            warnings.warn('RevColViT: with_cp=True is ignored when reversible=True (the reversible engine already '
                          'recomputes every column but the last in backward); set with_cp=False to silence this',
                          UserWarning, stacklevel=2)
            with_cp = False
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, init_cfg=init_cfg)
        self.arch = self.parse_arch(arch)
        self.embed_dims: int = self.arch['embed_dims']
        self.layers: List[int] = list(self.arch['layers'])
        self.num_columns: int = self.arch['num_columns']
        self.num_heads: int = self.arch['num_heads']
        self.patch_size = patch_size
        self.drop_path_rate = drop_path_rate
        self.reversible = reversible
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.grid = (img_size[0] // patch_size, img_size[1] // patch_size)

        self.patch_embed = nn.Conv2d(in_channels, self.embed_dims, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.embed_dims, *self.grid))
        dpr = torch.linspace(0, drop_path_rate, sum(self.layers), device='cpu').tolist()
        self.columns = nn.ModuleList([
            ViTColumn(self.embed_dims, self.layers, self.num_heads, self.arch.get('mlp_ratio', 4.), i == 0, dpr,
                      alpha_init) for i in range(self.num_columns)
        ])
        self._freeze_stages()

    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        arch = cls.resolve_arch(arch)
        arch['layers'] = cls.check_positive_ints(arch, 'layers', NUM_LEVELS, cls.__name__)
        return arch

    def stem_modules(self) -> List[nn.Module]:
        return [self.patch_embed]

    def frozen_parameters(self, frozen_stages: int):
        if frozen_stages >= 0:
            yield self.pos_embed
        yield from super().frozen_parameters(frozen_stages)

    def init_from_scratch(self) -> None:
        convnext_init_(self)  # official from-scratch init
        trunc_normal_(self.pos_embed, std=.02)
        with torch.no_grad():  # BEiT: scale each residual branch's output projection by its depth
            for column in self.columns:
                depth = 0
                for level in column.levels:
                    for block in level.blocks:
                        depth += 1
                        block.attn.proj.weight.div_(math.sqrt(2.0 * depth))
                        block.mlp[2].weight.div_(math.sqrt(2.0 * depth))

    def embed(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        # Always resized, also to its own grid (bicubic at scale 1 is the identity, bit for bit): a branch on the
        # input size would make torch.export specialise the program to one size.
        pos = F.interpolate(self.pos_embed, size=x.shape[-2:], mode='bicubic', align_corners=False)
        return x + pos

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if x.dim() != 4 or min(x.shape[-2:]) < self.patch_size:
            raise ValueError(f'RevColViT expects (N, C, H, W) images of at least {self.patch_size} px, '
                             f'got {tuple(x.shape)}')
        # alpha is clamped functionally inside column_forward (no in-place write: exportable, like RevCol)
        c = self.run_columns(self.embed(x))
        return tuple(c[i].contiguous() for i in self.out_indices)
