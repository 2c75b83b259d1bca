"""RevCol image classifier with intermediate supervision (paper sec. 2.3), for mmpretrain.

Every ``num_columns // 4`` columns the top level (stride 32) of the column feeds a classification head
(avg-pool -> LayerNorm -> Linear); all but the last tapped column also feed an image decoder that reconstructs the
input image, trained with BCE. The loss is ``sum_i bce_weights[i] * BCE_i + ce_weights[i] * CE_i``; by default (the
paper's and official code's) ``bce_weights = 3 * (1 - i / n_dec)`` -> 3, 2, 1 and ``ce_weights = 0.7 * (i + 1) / n``
-> 0.175, 0.35, 0.525, then 1.0 for the final head. Prediction uses the final head only.
"""
import re
from typing import List, Optional, Sequence, Tuple

import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleList
from mmengine.registry import MODELS
from mmpretrain.models.backbones.convnext import ConvNeXtBlock
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from torch import Tensor, nn

from ..layers.norm import LayerNorm2d

TRUNC_INIT = [dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.)]


@MODELS.register_module()
class RevColClsHead(ClsHead):
    """Official RevCol classifier: global average pool -> LayerNorm (eps 1e-6) -> Linear.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the input map (the top level of a column).
        loss (dict): Classification loss (soft targets from Mixup/CutMix are handled by it). Defaults to
            ``dict(type='CrossEntropyLoss', loss_weight=1.0)``.
    """

    def __init__(self, num_classes: int, in_channels: int,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0), init_cfg=TRUNC_INIT, **kwargs):
        super().__init__(loss=loss, init_cfg=init_cfg, **kwargs)
        self.num_classes, self.in_channels = num_classes, in_channels
        self.norm = nn.LayerNorm(in_channels, eps=1e-6)
        self.fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats) -> Tensor:
        x = feats[-1] if isinstance(feats, (tuple, list)) else feats
        return self.norm(x.mean(dim=(2, 3)))

    def forward(self, feats) -> Tensor:
        return self.fc(self.pre_logits(feats))


class RevColDecoder(BaseModule):
    """Official RevCol image decoder: stride 32 -> stride 1 logits of the 3 image channels.

    Three stages of (1x1 conv -> LayerNorm -> GELU -> bilinear x2 -> ConvNeXt block with hidden size = width), from
    ``channels[3]`` down to ``channels[0]``, then a 1x1 conv to 48 channels and PixelShuffle(4). Upsampling goes to
    the sizes the backbone's levels had, and the last step resizes to the image when its size is not a multiple of
    4, so the output always matches the input (the official x2 steps require multiples of 32).

    Args:
        channels (Sequence[int]): The backbone's four level widths (ascending).
        out_channels (int): Image channels. Defaults to 3.
        kernel_size (int): Depthwise kernel of the blocks. Defaults to 3.
        patch_size (int): Stem stride. Defaults to 4.
    """

    def __init__(self, channels: Sequence[int], out_channels: int = 3, kernel_size: int = 3, patch_size: int = 4,
                 init_cfg=TRUNC_INIT):
        super().__init__(init_cfg=init_cfg)
        dims = list(channels)[::-1]
        self.patch_size = patch_size
        self.proj_layers = nn.ModuleList([
            nn.Sequential(nn.Conv2d(dims[i - 1], dims[i], 1), LayerNorm2d(dims[i], eps=1e-6), nn.GELU())
            for i in range(1, len(dims))
        ])
        self.normal_layers = nn.ModuleList([
            nn.Sequential(
                ConvNeXtBlock(dims[i], dw_conv_cfg=dict(kernel_size=kernel_size, padding=(kernel_size - 1) // 2),
                              mlp_ratio=1., layer_scale_init_value=1e-6)) for i in range(1, len(dims))
        ])
        self.projback = nn.Sequential(nn.Conv2d(dims[-1], out_channels * patch_size**2, 1),
                                      nn.PixelShuffle(patch_size))

    def level_sizes(self, image_size: Tuple[int, int]) -> List[Tuple[int, int]]:
        """Sizes of the backbone's levels 0..3 for an image: stem ``floor(/4)``, then ``floor(/2)`` per level."""
        h, w = image_size[0] // self.patch_size, image_size[1] // self.patch_size
        sizes = [(h, w)]
        for _ in range(len(self.proj_layers)):
            h, w = h // 2, w // 2
            sizes.append((h, w))
        return sizes

    def forward(self, x: Tensor, image_size: Tuple[int, int]) -> Tensor:
        sizes = self.level_sizes(image_size)[::-1]  # level 3 first
        for stage, (proj, blocks) in enumerate(zip(self.proj_layers, self.normal_layers)):
            x = F.interpolate(proj(x), size=sizes[stage + 1], mode='bilinear', align_corners=True)
            x = blocks(x)
        x = self.projback(x)
        if tuple(x.shape[-2:]) != tuple(image_size):
            x = F.interpolate(x, size=image_size, mode='bilinear', align_corners=False)
        return x


def supervised_columns(num_columns: int) -> List[int]:
    """0-based columns whose top level is supervised: every ``num_columns // 4`` (at least 1), and the last."""
    interval = max(1, num_columns // 4)
    return sorted(set(range(interval - 1, num_columns, interval)) | {num_columns - 1})


def default_loss_weights(num_heads: int, bce_coef: float = 3.0,
                         ce_coef: float = 0.7) -> Tuple[List[float], List[float]]:
    """Official compound-loss weights: BCE ``bce_coef * (1 - i / n_dec)``, CE ``ce_coef * (i + 1) / n`` for the
    intermediate heads, 1.0 for the final one (``n`` heads, ``n_dec = n - 1`` decoders)."""
    n_dec = num_heads - 1
    bce = [bce_coef * (1 - i / n_dec) for i in range(n_dec)]
    ce = [ce_coef * (i + 1) / num_heads for i in range(n_dec)] + [1.0]
    return bce, ce


@MODELS.register_module()
class RevColClassifier(ImageClassifier):
    """RevCol classifier with intermediate supervision.

    Args:
        backbone (dict): A ``RevCol`` config (``reversible=True`` keeps activation memory constant in columns;
            the intermediate heads add a fixed amount).
        head (dict): The final head, a ``RevColClsHead`` config; intermediate heads are copies of it.
        intermediate_supervision (bool): Add the intermediate heads and decoders. Defaults to True.
        bce_weights (Sequence[float], optional): One weight per decoder. Defaults to the paper's.
        ce_weights (Sequence[float], optional): One weight per classification head, the final one last.
            Defaults to the paper's.
        bce_coef (float), ce_coef (float): Scales of the default weights (official ``FCOE``, ``CCOE``).
            Defaults to 3.0 and 0.7.
        decoder (dict, optional): Extra ``RevColDecoder`` arguments.
        bce_clamp (Tuple[float, float]): The reconstruction target (image in [0, 1]) is clamped to this range, as
            officially. Defaults to (0.01, 0.99).
        Other arguments as :class:`mmpretrain.models.ImageClassifier`. ``init_cfg=dict(type='Pretrained',
        checkpoint=...)`` loads an official classification checkpoint or one of ours (see :meth:`init_weights`).
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 intermediate_supervision: bool = True,
                 bce_weights: Optional[Sequence[float]] = None,
                 ce_weights: Optional[Sequence[float]] = None,
                 bce_coef: float = 3.0,
                 ce_coef: float = 0.7,
                 decoder: Optional[dict] = None,
                 bce_clamp: Tuple[float, float] = (0.01, 0.99),
                 neck: Optional[dict] = None,
                 **kwargs):
        if neck is not None:
            raise ValueError('RevColClassifier takes no neck: its heads pool the top level themselves')
        backbone = dict(backbone)
        backbone.setdefault('out_indices', (3, ))
        super().__init__(backbone=backbone, head=head, **kwargs)
        if not hasattr(self.backbone, 'forward_columns'):
            raise TypeError(f'RevColClassifier needs a RevCol backbone (forward_columns), got '
                            f'{type(self.backbone).__name__}; use ImageClassifier with RevColClsHead for others')
        num_columns = self.backbone.num_columns
        self.taps = supervised_columns(num_columns) if intermediate_supervision else [num_columns - 1]
        n = len(self.taps)
        default_bce, default_ce = default_loss_weights(n, bce_coef, ce_coef) if n > 1 else ([], [1.0])
        self.bce_weights = list(default_bce if bce_weights is None else bce_weights)
        self.ce_weights = list(default_ce if ce_weights is None else ce_weights)
        if len(self.bce_weights) != n - 1 or len(self.ce_weights) != n:
            raise ValueError(f'{num_columns} columns give {n} classification heads (columns '
                             f'{[t + 1 for t in self.taps]}) and {n - 1} decoders: need {n} ce_weights and {n - 1} '
                             f'bce_weights, got {len(self.ce_weights)} and {len(self.bce_weights)}')
        self.aux_heads = ModuleList(  # mmengine's: its init_weights reaches the heads
            [MMPRETRAIN_MODELS.build(head) for _ in range(n - 1)])
        channels = self.backbone.channels
        decoder = dict(decoder or {})
        decoder.setdefault('kernel_size', 3)
        self.decoders = ModuleList([RevColDecoder(channels, **decoder) for _ in range(n - 1)])
        self.bce_clamp = bce_clamp

    # ---------------------------------------------------------------------------------------------------------
    def _image_target(self, inputs: Tensor) -> Tensor:
        """The (batch-augmented) input image in [0, 1], clamped: the decoders' BCE target."""
        dp = self.data_preprocessor
        img = inputs.float()
        if getattr(dp, '_enable_normalize', False):
            img = img * dp.std + dp.mean
        return (img / 255.).clamp(*self.bce_clamp)

    def loss(self, inputs: Tensor, data_samples) -> dict:
        """One weighted term per head: ``loss_cls_col{j}`` (classifier on column j, 1-based) and
        ``loss_rec_col{j}`` (its decoder); the final head's term is unweighted by default."""
        _, tops = self.backbone.forward_columns(inputs, self.taps)
        losses = {}
        heads = list(self.aux_heads) + [self.head]
        target = None
        for i, (column, top) in enumerate(zip(self.taps, tops)):
            cls = heads[i]._get_loss(heads[i](top).float(), data_samples)['loss']
            losses[f'loss_cls_col{column + 1}'] = self.ce_weights[i] * cls
            if i < len(self.decoders):
                if target is None:
                    target = self._image_target(inputs)
                rec = self.decoders[i](top, inputs.shape[-2:]).float()
                losses[f'loss_rec_col{column + 1}'] = self.bce_weights[i] * F.binary_cross_entropy_with_logits(
                    rec, target)
        return losses

    def predict_all(self, inputs: Tensor) -> List[Tensor]:
        """Logits of every classification head (intermediate ones first), e.g. to evaluate each column."""
        _, tops = self.backbone.forward_columns(inputs, self.taps)
        heads = list(self.aux_heads) + [self.head]
        return [h(t) for h, t in zip(heads, tops)]

    # ---------------------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """With ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``: the backbone strictly through
        :mod:`mmrevcol.checkpoint` (official or ours, kernel-padded if needed), then the heads and decoders that
        correspond (official ``cls_blocks``/``decoder_blocks`` or ours); what is left over is named in one line."""
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        from ...checkpoint import extract_state_dict, prepare_state_dict, read_checkpoint
        from ...checkpoint.revcol_cls import convert_revcol_cls_heads
        filename = cfg['checkpoint']
        for module in (self.head, *self.aux_heads, *self.decoders):
            module.init_weights()  # random init for whatever the checkpoint does not provide
        checkpoint = read_checkpoint(filename, cfg.get('map_location', 'cpu'))
        backbone = prepare_state_dict(self.backbone, checkpoint)
        self.backbone.load_state_dict(backbone, strict=True)
        weights = {re.sub(r'^(module\.)+', '', k): v for k, v in extract_state_dict(checkpoint).items()}
        mapped, unmapped = convert_revcol_cls_heads(weights, len(self.aux_heads) + 1, len(self.decoders))
        own = self.state_dict()
        shape_mismatch = [k for k, v in mapped.items() if k in own and own[k].shape != v.shape]
        unexpected = [k for k in mapped if k not in own]
        usable = {k: v for k, v in mapped.items() if k in own and own[k].shape == v.shape}
        self.load_state_dict(usable, strict=False)
        head_keys = [k for k in own if not k.startswith(('backbone.', 'data_preprocessor.'))]
        fresh = [k for k in head_keys if k not in usable]
        print_log(
            f'RevColClassifier: backbone loaded strictly ({len(backbone)} tensors) from {filename}; heads: '
            f'{len(usable)} tensors loaded, checkpoint head keys not used {unmapped + unexpected}, shape '
            f'mismatches left at init {shape_mismatch}, classifier keys left at init {fresh}', logger='current')
        self._is_init = True
        for m in self.modules():
            m._is_init = True
