"""RevCol: Reversible Column Networks (https://arxiv.org/abs/2212.11696).

A stem feeds N identical columns of 4 levels (strides 4, 8, 16, 32). Level ``l`` of column ``i > 0`` is
``c_l = alpha_l * c_l(prev column) + Level_l(c_{l-1}(this column), c_{l+1}(prev column))``; the reversible
training path and its math are in :mod:`mmrevcol.models.reversible`.
"""
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from mmpretrain.models.backbones.convnext import ConvNeXtBlock
from torch import Tensor, nn

from ..layers import fused_convnext
from ..layers.norm import LayerNorm2d
from ..layers.weight_init import convnext_init_
from ..reversible import column_forward
from .base import ColumnBackbone
from ...utils.memory_format import channels_last_conv_weights_

NUM_LEVELS = 4


def _eager() -> bool:
    """Not tracing, compiling or exporting: where shape-dependent Python branches are free (the compilers fuse the
    plain ops themselves; a branch on sizes would become a guard on dynamic shapes)."""
    return not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
                or torch.compiler.is_exporting())


def _power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


class UpFusion(nn.Module):
    """Linear + LayerNorm on channels, then nearest resize to the target level's size.

    Resizing to an explicit size instead of a fixed x2 makes odd input sizes work (official segmentation code).
    :meth:`add_to` adds the resized map to another without materialising it where the resize is an exact
    power-of-two repeat.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.LayerNorm(out_channels, eps=1e-6)

    def project(self, x: Tensor) -> Tensor:
        """(N, h, w, C_out) channels-last-contiguous: the projected, normalised map before the resize."""
        return self.norm(self.proj(x.permute(0, 2, 3, 1)))

    def forward(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        return F.interpolate(self.project(x).permute(0, 3, 1, 2), size=size, mode='nearest')

    def add_to(self, target: Tensor, x: Tensor) -> Tensor:
        """``target + self(x, target.shape[-2:])``, bit for bit, in one pass over ``target``.

        When ``target`` is an exact power-of-two multiple of ``x``'s size (every level of inputs divisible by 32),
        nearest resizing repeats each value ``f`` times (its source index ``floor(i / f)`` is exact in floating
        point), so the projected map is broadcast-added to ``target`` viewed as (N, h, fh, w, fw, C): no resized
        map is written and read back. Elsewhere (odd sizes; tracing, compiling, exporting) the plain resize + add.
        """
        u = self.project(x)
        n, c, height, width = target.shape
        h, w = u.shape[1:3]
        fh, fw = height // h, width // w
        if not (_eager() and height == h * fh and width == w * fw and _power_of_two(fh) and _power_of_two(fw)):
            return target + F.interpolate(u.permute(0, 3, 1, 2), size=(height, width), mode='nearest')
        t = target.permute(0, 2, 3, 1).unflatten(2, (w, fw)).unflatten(1, (h, fh))  # (N, h, fh, w, fw, C) view
        out = t + u[:, :, None, :, None, :]
        return out.flatten(3, 4).flatten(1, 2).permute(0, 3, 1, 2)


class Fusion(nn.Module):
    """Fuse the lower level of this column (down) with higher levels of the previous column (up).

    Args:
        level (int): Level index 0-3.
        channels (Sequence[int]): Channels of the four levels.
        first (bool): First column: no previous column, so no up branch.
        top_fusion (bool): RevCol-H: level 0 also receives the previous column's level 3 (x8 up branch).
    """

    def __init__(self, level: int, channels: Sequence[int], first: bool, top_fusion: bool = False):
        super().__init__()
        self.down = nn.Identity() if level == 0 else nn.Sequential(
            nn.Conv2d(channels[level - 1], channels[level], kernel_size=2, stride=2),
            LayerNorm2d(channels[level], eps=1e-6))
        self.up = None if first or level == NUM_LEVELS - 1 else UpFusion(channels[level + 1], channels[level])
        self.up_top = UpFusion(channels[-1], channels[level]) if top_fusion and not first and level == 0 else None

    def forward(self, down_input: Tensor, *prev_inputs: Tensor) -> Tensor:
        x = self.down(down_input)
        for up, c in zip((u for u in (self.up, self.up_top) if u is not None), prev_inputs):
            x = up.add_to(x, c)  # x + up(c, x.shape[-2:]), without the resized intermediate
        return x


class Level(nn.Module):
    """Fusion followed by ConvNeXt blocks with a ``kernel_size`` depthwise conv."""

    def __init__(self, level: int, channels: Sequence[int], num_blocks: int, kernel_size: int, first: bool,
                 drop_path_rates: Sequence[float], top_fusion: bool = False, layer_scale_init_value: float = 1e-6):
        super().__init__()
        self.fusion = Fusion(level, channels, first, top_fusion)
        self.blocks = nn.Sequential(*[
            ConvNeXtBlock(
                channels[level],
                dw_conv_cfg=dict(kernel_size=kernel_size, padding=(kernel_size - 1) // 2),
                norm_cfg=dict(type='LN2d', eps=1e-6),
                drop_path_rate=drop_path_rates[b],
                layer_scale_init_value=layer_scale_init_value) for b in range(num_blocks)
        ])
        self.fusable = all(fused_convnext.fusable(b) for b in self.blocks)

    def forward(self, down_input: Tensor, *prev_inputs: Tensor) -> Tensor:
        x = self.fusion(down_input, *prev_inputs)
        if self.fusable and not self.training and fused_convnext.can_fuse(self.blocks, x):
            for block in self.blocks:
                x = fused_convnext.fused_block_forward(block, x)
            return x
        return self.blocks(x)


class Column(nn.Module):
    """One column (official ``SubNet``). The first column has no alpha: it would only multiply zeros."""

    def __init__(self, channels: Sequence[int], layers: Sequence[int], kernel_size: int, first: bool,
                 drop_path_rates: Sequence[float], top_fusion: bool = False, alpha_init: float = 0.5):
        super().__init__()
        self.first = first
        self.top_fusion = top_fusion
        starts = [sum(layers[:level]) for level in range(NUM_LEVELS)]
        self.levels = nn.ModuleList([
            Level(level, channels, layers[level], kernel_size, first,
                  drop_path_rates[starts[level]:starts[level] + layers[level]], top_fusion)
            for level in range(NUM_LEVELS)
        ])
        self.alpha = None if first else nn.ParameterList(
            [nn.Parameter(torch.full((1, c, 1, 1), alpha_init)) for c in channels])

    def prev_inputs(self, level: int) -> Tuple[int, ...]:
        """Levels of the previous column that ``levels[level]`` reads (besides its own lower level)."""
        if self.first:
            return ()
        ups = (level + 1, ) if level < NUM_LEVELS - 1 else ()
        return ups + ((NUM_LEVELS - 1, ) if self.top_fusion and level == 0 else ())

    def forward(self, x: Tensor, prev: Optional[Sequence[Tensor]] = None) -> List[Tensor]:
        return column_forward(self, x, prev)


@MODELS.register_module()
class RevCol(ColumnBackbone):
    """RevCol backbone for mmdet, mmseg and mmpretrain.

    Args:
        arch (str | dict): One of ``RevCol.arch_settings`` ('tiny', 'small', 'base', 'large', 'xlarge', 'huge')
            or a dict with ``channels`` (4 ints), ``layers`` (4 ints), ``num_columns`` (int) and optionally
            ``top_fusion`` (bool, RevCol-H's extra level-3 -> level-0 branch). Defaults to 'tiny'.
        in_channels (int): Image channels. Defaults to 3.
        kernel_size (int): Odd depthwise kernel size of the ConvNeXt blocks. A checkpoint with smaller kernels is
            kernel-padded on load. Defaults to 3.
        drop_path_rate (float): Stochastic depth: ``linspace(0, rate, sum(layers))`` by block position, the same
            in every column (official). Defaults to 0.
        reversible (bool): Train with the reversible engine: activation memory independent of the number of
            columns, at about 1.3x the step time. Defaults to False.
        with_cp (bool): With ``reversible=False``, checkpoint each column (recompute it in backward).
            Defaults to False.
        out_indices (Sequence[int]): Levels of the last column to return (strides 4/8/16/32). Defaults to
            (0, 1, 2, 3).
        frozen_stages (int): -1 freezes nothing; 0 the stem; ``k >= 1`` the stem and levels ``0..k-1`` of every
            column (their fusion, blocks and alpha; put in eval mode). Defaults to -1.
        norm_eval (bool): The base's BatchNorm switch; RevCol has only LayerNorms, so it changes nothing.
            Defaults to False.
        alpha_init (float): Initial value of the reversible shortcut scales. Defaults to 0.5.
        kernel_pad_std (float): Std of the new entries when loading smaller pretrained kernels. Defaults to 1e-7.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH[, prefix='backbone.'])`` loads an
            official or mmrevcol checkpoint strictly (see :mod:`mmrevcol.checkpoint`).
    """
    arch_settings: Dict[str, dict] = {
        'tiny': dict(channels=[64, 128, 256, 512], layers=[2, 2, 4, 2], num_columns=4),
        'small': dict(channels=[64, 128, 256, 512], layers=[2, 2, 4, 2], num_columns=8),
        'base': dict(channels=[72, 144, 288, 576], layers=[1, 1, 3, 2], num_columns=16),
        'large': dict(channels=[128, 256, 512, 1024], layers=[1, 2, 6, 2], num_columns=8),
        'xlarge': dict(channels=[224, 448, 896, 1792], layers=[1, 2, 6, 2], num_columns=8),
        'huge': dict(channels=[360, 720, 1440, 2880], layers=[1, 2, 6, 2], num_columns=8, top_fusion=True),
    }
    arch_aliases = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large', 'xl': 'xlarge', 'h': 'huge'}
    arch_required = ('channels', 'layers', 'num_columns')
    arch_optional = ('top_fusion', )

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 kernel_size: int = 3,
                 drop_path_rate: float = 0.,
                 reversible: bool = False,
                 with_cp: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 alpha_init: float = 0.5,
                 kernel_pad_std: float = 1e-7,
                 norm_eval: bool = False,
                 init_cfg: Optional[dict] = None):
        if reversible and with_cp:
            warnings.warn('RevCol: with_cp=True is ignored when reversible=True (the reversible engine already '
                          'recomputes every column but the last in backward, keeping one column of activations); '
                          'set with_cp=False to silence this', UserWarning, stacklevel=2)
            with_cp = False
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, init_cfg=init_cfg)
        self.arch = self.parse_arch(arch)
        self.channels: List[int] = list(self.arch['channels'])
        self.layers: List[int] = list(self.arch['layers'])
        self.num_columns: int = self.arch['num_columns']
        if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
            raise ValueError(f'kernel_size must be a positive odd int, got {kernel_size!r}')
        self.kernel_size = kernel_size
        self.kernel_pad_std = kernel_pad_std
        self.drop_path_rate = drop_path_rate
        self.reversible = reversible

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, self.channels[0], kernel_size=4, stride=4),
            LayerNorm2d(self.channels[0], eps=1e-6))
        dpr = torch.linspace(0, drop_path_rate, sum(self.layers), device='cpu').tolist()
        top_fusion = bool(self.arch.get('top_fusion', False))
        self.columns = nn.ModuleList([
            Column(self.channels, self.layers, kernel_size, i == 0, dpr, top_fusion, alpha_init)
            for i in range(self.num_columns)
        ])
        channels_last_conv_weights_(self.columns)  # as their gradients come (channels-last maps): no DDP copy
        self.deploy = False
        self._freeze_stages()

    # ---------------------------------------------------------------------------------------------------------
    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        arch = cls.resolve_arch(arch)
        for key in ('channels', 'layers'):
            arch[key] = cls.check_positive_ints(arch, key, NUM_LEVELS, cls.__name__)
        if not (isinstance(arch['num_columns'], int) and arch['num_columns'] >= 1):
            raise ValueError(f"RevCol: arch['num_columns'] must be a positive int, got {arch['num_columns']}")
        return arch

    # ---------------------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return self.forward_columns(x, ())[0]

    def forward_columns(self, x: Tensor, taps: Sequence[int]) -> Tuple[Tuple[Tensor, ...], List[Tensor]]:
        """``forward(x)`` plus the top level (stride 32) of the columns listed in ``taps``, for intermediate
        supervision (:class:`mmrevcol.models.RevColClassifier`).

        Every training mode works: in reversible mode the tapped outputs come out of the reversible stream and
        the gradients they receive join the stream's backward, so memory grows with the taps, not with columns.

        Returns:
            tuple: (``forward(x)``'s outputs, the tapped top levels in the order of ``taps``).
        """
        if x.dim() != 4 or x.shape[-2] < 32 or x.shape[-1] < 32:
            raise ValueError(f'RevCol expects (N, C, H, W) images with H, W >= 32, got {tuple(x.shape)}')
        taps = [t % self.num_columns for t in taps]
        tapped: Dict[int, Tensor] = {}

        def tap(index: int, c: Sequence[Tensor]) -> None:
            if index in taps:
                tapped[index] = c[NUM_LEVELS - 1]

        c = self.run_columns(self.stem(x), on_column=tap if taps else None)
        # Internally channels-last; hand out standard NCHW-contiguous maps: some compiled ops downstream (mmcv's
        # CPU RoIAlign) read the raw memory as NCHW.
        outs = tuple(c[i].contiguous() for i in self.out_indices)
        return outs, [tapped[t] for t in taps]

    # ---------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold what is constant at inference into the weights; the function is unchanged (up to rounding).

        - Each ConvNeXt block's layer scale ``gamma`` goes into its second linear layer (``W * gamma``,
          ``b * gamma``): one multiply over every block's output less.
        - Conv weights are stored channels-last, the layout the feature maps have, so no conv converts its weight
          on every call.

        Irreversible, like mmpretrain's ``RepVGG.switch_to_deploy``: the state dict loses the ``gamma`` keys, so
        load checkpoints (and train) before calling it.
        """
        if self.deploy:
            return
        for module in self.modules():
            if isinstance(module, ConvNeXtBlock) and module.gamma is not None:
                fc = module.pointwise_conv2
                gamma = module.gamma.detach()
                fc.weight.mul_(gamma.view(-1, *([1] * (fc.weight.dim() - 1))))
                if fc.bias is not None:
                    fc.bias.mul_(gamma)
                del module.gamma
                module.gamma = None
            elif isinstance(module, nn.Conv2d) and module.weight.dim() == 4:
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)
        self.deploy = True

    # ---------------------------------------------------------------------------------------------------------
    def stem_modules(self) -> List[nn.Module]:
        return [self.stem]

    def init_from_scratch(self) -> None:
        convnext_init_(self)  # official from-scratch init
