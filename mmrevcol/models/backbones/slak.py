"""SLaK: Sparse Large Kernel Network (https://arxiv.org/abs/2207.03620).

A ConvNeXt (stem, 4 stages of blocks, LN + 2×2 conv downsampling) whose 7×7 depthwise conv is replaced by
:class:`~mmrevcol.models.layers.large_kernel.LargeKernelConv`: K×s + s×K + s×s depthwise convs with a BatchNorm
each (K = 51/49/47/13 by stage, s = 5), channels widened by ``width_factor`` 1.3. Trained with dynamic sparsity
(:mod:`mmrevcol.engine.sparsity`); the published params/FLOPs count the 40%-sparse model's non-zero weights.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.registry import MODELS
from mmpretrain.models.backbones.convnext import ConvNeXtBlock
from torch import Tensor, nn

from ..layers.large_kernel import LargeKernelConv
from ..layers.norm import LayerNorm2d
from ..layers.weight_init import convnext_init_
from ...utils.memory_format import channels_last_conv_weights_
from .base import BaseBackbone

NUM_STAGES = 4
# Official stage-wise decay: ``num_layers=6`` in the configs, ``num_layers + 2`` ids in the constructor (ConvNeXt's
# ``LearningRateDecayOptimizerConstructor``, also mmseg's); ids 0-4 and 7 are used.
STAGE_WISE_IDS = 8


class SLaKBlock(ConvNeXtBlock):
    """mmpretrain's ConvNeXt block with SLaK's large-kernel conv as its ``depthwise_conv``.

    ``x + drop_path(gamma * Linear(GELU(Linear(LN(LargeKernelConv(x))))))``: the same order, norm (LN, eps 1e-6)
    and layer scale as the official ``Block``.
    """

    def __init__(self, channels: int, kernel_size: int, small_kernel: Optional[int], decompose: bool = True,
                 norm_cfg: Optional[dict] = None, impl: str = 'auto', drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6, with_cp: bool = False, deploy: bool = False):
        # A 1×1 placeholder instead of a throwaway K×K conv; replaced right below.
        super().__init__(channels, dw_conv_cfg=dict(kernel_size=1), norm_cfg=dict(type='LN2d', eps=1e-6),
                         drop_path_rate=drop_path_rate, layer_scale_init_value=layer_scale_init_value,
                         with_cp=with_cp)
        self.depthwise_conv = LargeKernelConv(channels, kernel_size, small_kernel, decompose, norm_cfg, impl,
                                              deploy)


@MODELS.register_module()
class SLaK(BaseBackbone):
    """SLaK backbone for mmdet, mmseg and mmpretrain.

    Args:
        arch (str | dict): 'tiny', 'small', 'base' (or 't', 's', 'b'), or a dict with ``dims`` (4 ints, before
            ``width_factor``) and ``depths`` (4 ints). Defaults to 'tiny'.
        in_channels (int): Image channels. Defaults to 3.
        kernel_size (Sequence[int]): Large kernel of each stage followed by the small kernel ``s``, all odd.
            Defaults to [51, 49, 47, 13, 5].
        width_factor (float): Channels are ``int(d * width_factor)``. Defaults to 1.3.
        decompose (bool): K×s + s×K + s×s (the SLaK models) instead of K×K + s×s. Defaults to True.
        drop_path_rate (float): Stochastic depth, ``linspace(0, rate, sum(depths))`` by block. Defaults to 0.
        layer_scale_init_value (float): Initial layer scale ``gamma``; 0 disables it. Defaults to 1e-6.
        out_indices (Sequence[int]): Stages to return (strides 4, 8, 16, 32). Defaults to (0, 1, 2, 3).
        out_norm (bool): A LayerNorm (``norm{i}``) on each returned stage, as the official detection and
            segmentation backbone; False returns the raw stage outputs and has no output norm layers.
            Defaults to True.
        gap_before_final_norm (bool): With ``out_norm``, return ``norm{i}(global average pool)`` as (N, C)
            vectors, as the official classifier's final norm (mmpretrain's ConvNeXt option; for an ImageClassifier
            without neck). Defaults to False.
        frozen_stages (int): -1 freezes nothing; 0 the stem; ``k >= 1`` the stem and stages ``0..k-1`` (with the
            downsampling that enters them and their output norms; put in eval mode). Defaults to -1.
        norm_cfg (dict): Norm of the large-kernel branches, a BatchNorm ('BN', 'SyncBN'). Defaults to
            ``dict(type='BN')``.
        norm_eval (bool): Keep those BatchNorms in eval mode while training (frozen statistics). Defaults to False.
        impl (str): Large-kernel implementation, 'auto' | 'conv' | 'fft' | 'triton'
            (:mod:`~mmrevcol.models.layers.large_kernel`; 'triton' needs a CUDA device and Triton). Defaults to
            'auto'.
        with_cp (bool): Checkpoint each block (recompute it in backward). Defaults to False.
        deploy (bool): Build the re-parameterised form (one K×K conv with bias per block), e.g. to load the
            output of :meth:`switch_to_deploy`. Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH[, prefix='backbone.'])`` loads an
            official (classification ``model``/``model_ema``, mmdet/mmseg ``state_dict``) or mmrevcol checkpoint
            strictly (see :mod:`mmrevcol.checkpoint.slak`).
    """
    arch_settings: Dict[str, dict] = {
        'tiny': dict(dims=[96, 192, 384, 768], depths=[3, 3, 9, 3]),
        'small': dict(dims=[96, 192, 384, 768], depths=[3, 3, 27, 3]),
        'base': dict(dims=[128, 256, 512, 1024], depths=[3, 3, 27, 3]),
    }
    arch_aliases = {'t': 'tiny', 's': 'small', 'b': 'base'}
    arch_required = ('dims', 'depths')

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 kernel_size: Sequence[int] = (51, 49, 47, 13, 5),
                 width_factor: float = 1.3,
                 decompose: bool = True,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm: bool = True,
                 gap_before_final_norm: bool = False,
                 frozen_stages: int = -1,
                 norm_cfg: Optional[dict] = None,
                 norm_eval: bool = False,
                 impl: str = 'auto',
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, init_cfg=init_cfg)
        arch = self.parse_arch(arch)
        self.depths: List[int] = list(arch['depths'])
        self.dims: List[int] = [int(d * width_factor) for d in arch['dims']]
        kernel_size = list(kernel_size)
        if len(kernel_size) != NUM_STAGES + 1 or any(not isinstance(k, int) or k < 1 or k % 2 == 0
                                                     for k in kernel_size):
            raise ValueError(f'kernel_size must be 5 odd ints (4 stage kernels + the small kernel), got {kernel_size}')
        self.kernel_size = kernel_size
        self.width_factor = width_factor
        self.decompose = decompose
        self.out_norm = out_norm
        self.gap_before_final_norm = gap_before_final_norm
        norm_cfg = norm_cfg or dict(type='BN', requires_grad=True)

        dims = self.dims
        self.downsample_layers = nn.ModuleList([
            nn.Sequential(nn.Conv2d(in_channels, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6))
        ])
        for i in range(1, NUM_STAGES):
            self.downsample_layers.append(
                nn.Sequential(LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dims[i], 2, stride=2)))
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        self.stages = nn.ModuleList()
        for i in range(NUM_STAGES):
            start = sum(self.depths[:i])
            self.stages.append(nn.Sequential(*[
                SLaKBlock(dims[i], kernel_size[i], kernel_size[-1], decompose, norm_cfg, impl, dpr[start + j],
                          layer_scale_init_value, with_cp, deploy) for j in range(self.depths[i])
            ]))
        if out_norm:
            for i in self.out_indices:
                self.add_module(f'norm{i}', LayerNorm2d(dims[i], eps=1e-6))
        if impl in ('auto', 'conv'):
            # After the stem's LayerNorm the stream is channels-last, and so are the gradients F.conv2d gives every
            # later conv's weight: store those weights that way (no copy per step, none in DDP's buckets). The FFT
            # and Triton paths return NCHW weight gradients and keep the default layout.
            channels_last_conv_weights_(nn.ModuleList([*self.downsample_layers[1:], *self.stages]))
        self._freeze_stages()

    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        arch = cls.resolve_arch(arch)
        return {key: cls.check_positive_ints(arch, key, NUM_STAGES, cls.__name__) for key in cls.arch_required}

    # ---------------------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if min(x.shape[-2:]) < 32:
            # any size from 32 px works (stride 32, floored); below, stage 4 would be empty
            raise ValueError(f'SLaK needs inputs of at least 32x32 pixels, got {tuple(x.shape[-2:])}')
        outs = []
        for i in range(NUM_STAGES):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in self.out_indices:
                if self.out_norm and self.gap_before_final_norm:
                    outs.append(getattr(self, f'norm{i}')(x.mean([-2, -1], keepdim=True)).flatten(1))
                    continue
                out = getattr(self, f'norm{i}')(x) if self.out_norm else x
                outs.append(out.contiguous())  # NCHW memory (mmcv's CPU RoIAlign reads it as such)
        return tuple(outs)

    def switch_to_deploy(self) -> None:
        """Fold every BN into its conv and merge the kernels of each block into one K×K depthwise conv."""
        for m in self.modules():
            if isinstance(m, LargeKernelConv):
                m.switch_to_deploy()

    # ---------------------------------------------------------------------------------------------------------
    def stem_modules(self) -> List[nn.Module]:
        return [self.downsample_layers[0]]

    def stage_modules(self, index: int) -> List[nn.Module]:
        modules = [self.stages[index]] if index == 0 else [self.downsample_layers[index], self.stages[index]]
        return modules + ([getattr(self, f'norm{index}')] if hasattr(self, f'norm{index}') else [])

    def init_from_scratch(self) -> None:
        convnext_init_(self)  # official from-scratch init

    # ---------------------------------------------------------------------------------------------------------
    decay_types = ('layer_wise', 'stage_wise')

    def _max_layer_id(self) -> int:
        # Official ``num_layers`` of the layer-wise configs: 6 for depth 9 in stage 2, 12 for depth 27.
        return 3 + (self.depths[2] - 1) // 3 + 1

    def num_layer_ids(self, decay_type: str = 'layer_wise') -> int:
        """Official ConvNeXt/SLaK rule: ``layer_wise`` ``max_layer + 2`` (8 for SLaK-T, 14 for S/B);
        ``stage_wise`` 8 (the recipe's ``num_layers=6`` + 2, of which ids 0-4 and 7 are used)."""
        return self._max_layer_id() + 2 if decay_type == 'layer_wise' else STAGE_WISE_IDS

    def layer_id(self, name: str, decay_type: str) -> int:
        """Official ConvNeXt/SLaK rule. ``stage_wise`` (the SLaK downstream recipe): the downsampling layers 0,
        stage i ``i + 1``, everything else (output norms, neck, heads) the last id. ``layer_wise``: stem 0; stage 0
        1; downsample 1 / stage 1 2; downsample 2 3; stage 2 block b ``3 + b // 3``; downsample 3 / stage 3
        ``max_layer``; everything else ``max_layer + 1``."""
        parts = name.split('.')
        if parts[0] not in ('downsample_layers', 'stages'):
            return self.num_layer_ids(decay_type) - 1
        stage = int(parts[1])
        if decay_type == 'stage_wise':
            return 0 if parts[0] == 'downsample_layers' else stage + 1
        max_layer = self._max_layer_id()
        if parts[0] == 'downsample_layers':
            return {0: 0, 1: 2, 2: 3, 3: max_layer}[stage]
        return {0: 1, 1: 2, 2: 3 + int(parts[2]) // 3, 3: max_layer}[stage]
