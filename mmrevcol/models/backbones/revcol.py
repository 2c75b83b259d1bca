"""RevCol: Reversible Column Networks (https://arxiv.org/abs/2212.11696).

A stem feeds N identical columns of 4 levels (strides 4, 8, 16, 32). Level ``l`` of column ``i > 0`` is
``c_l = alpha_l * c_l(prev column) + Level_l(c_{l-1}(this column), c_{l+1}(prev column))``; the reversible
training path and its math are in :mod:`mmrevcol.models.reversible`.
"""
import copy
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmpretrain.models.backbones.convnext import ConvNeXtBlock
from torch import Tensor, nn

from ...checkpoint import check_init_cfg
from ..layers.weight_init import convnext_init_
from ..reversible import column_forward, reversible_columns

NUM_LEVELS = 4


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of (N, C, H, W) tensors, left in channels-last memory.

    Unlike mmpretrain's ``LayerNorm2d`` it does not copy the result back to NCHW layout: the whole stream then
    stays channels-last, where the depthwise convs are faster and the blocks' ``permute`` to (N, H, W, C) is free.
    """

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class UpFusion(nn.Module):
    """Linear + LayerNorm on channels, then nearest resize to the target level's size.

    Resizing to an explicit size instead of a fixed x2 makes odd input sizes work (official segmentation code).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.LayerNorm(out_channels, eps=1e-6)

    def forward(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        x = self.norm(self.proj(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return F.interpolate(x, size=size, mode='nearest')


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
        size = x.shape[-2:]
        for up, c in zip((u for u in (self.up, self.up_top) if u is not None), prev_inputs):
            x = x + up(c, size)
        return x


def _mkldnn_linear_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, '_linear_pointwise')
    except (AttributeError, RuntimeError):
        return False


_MKLDNN_LINEAR = _mkldnn_linear_available()


def fast_inference_ok(x: Tensor) -> bool:
    """Eager fp32 CPU inference without autograd: where :func:`fast_block_forward` may replace the blocks.

    Never while tracing, compiling or exporting: the fused ops are oneDNN's private ones (the same ones Inductor's
    CPU backend emits), which exporters don't know; there the standard ops run and the compiler fuses them.
    """
    return (_MKLDNN_LINEAR and x.device.type == 'cpu' and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and x.requires_grad) and not torch.is_autocast_enabled('cpu')
            and not torch.jit.is_tracing() and not torch.jit.is_scripting() and not torch.compiler.is_compiling()
            and not torch.compiler.is_exporting())


def fast_block_forward(block: ConvNeXtBlock, x: Tensor) -> Tensor:
    """mmpretrain's ``ConvNeXtBlock.forward`` (eval, linear pointwise convs) with oneDNN's fused ops: the first
    linear layer computes GELU in its epilogue and, once ``gamma`` is folded (``switch_to_deploy``), the second one
    adds the shortcut in its own. Same function; two or three passes over the block's activations fewer."""
    n, c, h, w = x.shape
    y = block.depthwise_conv(x).permute(0, 2, 3, 1)  # channels-last in: (N, H, W, C) contiguous, no copy
    norm = block.norm
    y = F.layer_norm(y, norm.normalized_shape, norm.weight, norm.bias, norm.eps).reshape(-1, c)
    fc1, fc2 = block.pointwise_conv1, block.pointwise_conv2
    y = torch.ops.mkldnn._linear_pointwise(y, fc1.weight, fc1.bias, 'gelu', [], block.act.approximate)
    shortcut = x.permute(0, 2, 3, 1).reshape(-1, c)
    if block.gamma is None:
        y = torch.ops.mkldnn._linear_pointwise.binary(y, shortcut, fc2.weight, fc2.bias, 'add')
    else:
        y = torch.addcmul(shortcut, F.linear(y, fc2.weight, fc2.bias), block.gamma)
    return y.view(n, h, w, c).permute(0, 3, 1, 2)


def _fusable(block: nn.Module) -> bool:
    return (isinstance(block, ConvNeXtBlock) and block.linear_pw_conv and block.grn is None
            and isinstance(block.act, nn.GELU) and isinstance(block.pointwise_conv1, nn.Linear))


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
        self.fusable = all(_fusable(b) for b in self.blocks)

    def forward(self, down_input: Tensor, *prev_inputs: Tensor) -> Tensor:
        x = self.fusion(down_input, *prev_inputs)
        if self.fusable and not self.training and fast_inference_ok(x) and not (
                torch.is_grad_enabled() and any(p.requires_grad for p in self.blocks.parameters())):
            for block in self.blocks:
                x = fast_block_forward(block, x)
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


def _column_fn(column: Column):
    # torch.utils.checkpoint wants tensors as positional args and a callable.
    def run(x, *prev):
        return tuple(column(x, prev if prev else None))

    return run


class RevCol(BaseModule):
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
                 init_cfg: Optional[dict] = None):
        check_init_cfg(init_cfg, 'RevCol init_cfg')
        super().__init__(init_cfg=init_cfg)
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
        if reversible and with_cp:
            warnings.warn('RevCol: with_cp=True is ignored when reversible=True (the reversible engine already '
                          'recomputes every column but the last in backward, keeping one column of activations); '
                          'set with_cp=False to silence this', UserWarning, stacklevel=2)
            with_cp = False
        self.with_cp = with_cp
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        self.out_indices = []
        for i in out_indices:
            if not -NUM_LEVELS <= i < NUM_LEVELS:
                raise ValueError(f'out_indices must be in [-4, 3], got {list(out_indices)}')
            self.out_indices.append(i % NUM_LEVELS)
        if not -1 <= frozen_stages <= NUM_LEVELS:
            raise ValueError(f'frozen_stages must be in [-1, {NUM_LEVELS}], got {frozen_stages}')
        self.frozen_stages = frozen_stages

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, self.channels[0], kernel_size=4, stride=4),
            LayerNorm2d(self.channels[0], eps=1e-6))
        dpr = torch.linspace(0, drop_path_rate, sum(self.layers), device='cpu').tolist()
        top_fusion = bool(self.arch.get('top_fusion', False))
        self.columns = nn.ModuleList([
            Column(self.channels, self.layers, kernel_size, i == 0, dpr, top_fusion, alpha_init)
            for i in range(self.num_columns)
        ])
        self.deploy = False
        self._freeze_stages()

    # ---------------------------------------------------------------------------------------------------------
    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            name = cls.arch_aliases.get(arch.lower(), arch.lower())
            if name not in cls.arch_settings:
                raise ValueError(f'Unknown RevCol arch {arch!r}; choose one of {sorted(cls.arch_settings)} '
                                 'or a dict(channels=[4 ints], layers=[4 ints], num_columns=int)')
            return copy.deepcopy(cls.arch_settings[name])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or dict, got {type(arch).__name__}')
        arch = dict(arch)
        missing = {'channels', 'layers', 'num_columns'} - set(arch)
        unknown = set(arch) - {'channels', 'layers', 'num_columns', 'top_fusion'}
        if missing or unknown:
            raise ValueError(f'RevCol arch dict needs keys channels, layers, num_columns (optional top_fusion); '
                             f'missing {sorted(missing)}, unknown {sorted(unknown)}')
        for key in ('channels', 'layers'):
            value = arch[key]
            if len(value) != NUM_LEVELS or not all(isinstance(v, int) and v > 0 for v in value):
                raise ValueError(f'arch[{key!r}] must be {NUM_LEVELS} positive ints, got {value}')
        if not (isinstance(arch['num_columns'], int) and arch['num_columns'] >= 1):
            raise ValueError(f"arch['num_columns'] must be a positive int, got {arch['num_columns']}")
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

        x = self.stem(x)
        columns = list(self.columns)
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.columns.parameters()))
        if self.reversible and needs_grad:
            # The last column runs under plain autograd: its activations are needed at once by backward, so
            # recomputing it would cost time and save nothing.
            replay_rng = self.training and self.drop_path_rate > 0
            c = reversible_columns(columns[:-1], x, replay_rng, tap if taps else None) if len(columns) > 1 else None
            c = columns[-1](x, c)
            tap(len(columns) - 1, c)
        elif self.with_cp and needs_grad:
            c: tuple = ()
            for index, column in enumerate(columns):
                c = cp.checkpoint(_column_fn(column), x, *c, use_reentrant=False)
                tap(index, c)
        else:
            c = None
            for index, column in enumerate(columns):
                c = column(x, c)
                tap(index, c)
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
    def _frozen_modules(self):
        if self.frozen_stages >= 0:
            yield self.stem
        for column in self.columns:
            for level in range(max(self.frozen_stages, 0)):
                yield column.levels[level]

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False
        for column in self.columns[1:]:
            for level in range(max(self.frozen_stages, 0)):
                column.alpha[level].requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    # ---------------------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        # init_cfg=Pretrained: BaseModule.init_weights -> mmrevcol's strict initializer (mmrevcol.checkpoint.init_cfg)
        if self.init_cfg is None:
            convnext_init_(self)  # official from-scratch init
            self._is_init = True
            return
        super().init_weights()

    # ---------------------------------------------------------------------------------------------------------
    @property
    def num_layer_ids(self) -> int:
        """Number of layer-wise depth ids (official: ``sum(layers) + num_columns + 1``)."""
        return sum(self.layers) + self.num_columns + 1

    def get_layer_depth(self, param_name: str, prefix: str = '', decay_type: str = 'layer_wise'):
        """Depth id of a parameter for layer-wise LR decay, and the number of ids.

        ``layer_wise`` (official): stem 0; ``columns.j.alpha.l`` j+1; fusion of level l in column j
        ``sum(layers[:l]) + j + 1``; block b there ``sum(layers[:l]) + b + j + 1``; anything outside the
        backbone ``sum(layers) + num_columns``. ``stage_wise``: stem 0; everything of level l (all columns,
        alpha included) l+1; outside 5.

        Returns:
            Tuple[int, int]: (layer id, number of layer ids); lr scale is ``rate ** (num - id - 1)``.
        """
        if decay_type == 'stage_wise':
            num = NUM_LEVELS + 2
        elif decay_type == 'layer_wise':
            num = self.num_layer_ids
        else:
            raise ValueError(f"decay_type must be 'layer_wise' or 'stage_wise', got {decay_type!r}")
        if not param_name.startswith(prefix):
            return num - 1, num
        parts = param_name[len(prefix):].split('.')
        if parts[0] == 'stem':
            return 0, num
        if parts[0] != 'columns':
            return num - 1, num
        column = int(parts[1])
        level = int(parts[3])  # columns.j.alpha.l / columns.j.levels.l....
        if decay_type == 'stage_wise':
            return level + 1, num
        if parts[2] == 'alpha':
            return column + 1, num
        block = int(parts[5]) if parts[4] == 'blocks' else 0
        return sum(self.layers[:level]) + block + column + 1, num
