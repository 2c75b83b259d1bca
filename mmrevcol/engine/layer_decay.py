"""Layer-wise learning-rate decay for RevCol (official recipe, issue #4) and any backbone with ``get_layer_depth``.

``BackboneLayerDecayOptimizerConstructor`` works for every backbone that defines
``get_layer_depth(param_name, prefix, decay_type) -> (layer_id, num_ids)`` (RevCol, SLaK: the official ConvNeXt /
SLaK stage-wise rule); ``RevColLayerDecayOptimizerConstructor`` is the same constructor requiring a RevCol.

``RevColLayerDecayOptimizerConstructor`` is registered in mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS``, so the
same config works under ``default_scope='mmdet'`` and ``'mmseg'``::

    optim_wrapper = dict(
        type='OptimWrapper',  # or 'AmpOptimWrapper'
        constructor='RevColLayerDecayOptimizerConstructor',
        optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
        paramwise_cfg=dict(decay_rate=0.85, decay_type='layer_wise'))

The depth of every parameter comes from the *built* backbone (``RevCol.get_layer_depth``): stem 0, ...,
everything outside the backbone (neck, heads) ``num - 1``, and ``lr = base_lr * decay_rate ** (num - id - 1)``.
No weight decay for 1-D parameters, biases, the reversible shortcut scales ``alpha`` and the ConvNeXt ``gamma``.
Frozen parameters (``requires_grad=False``) are left out. ``decay_rate=1.0`` is plain AdamW with the
no-weight-decay rules.
"""
"""Layer-wise learning-rate decay for every backbone of the zoo.

``BackboneLayerDecayOptimizerConstructor`` reads each parameter's depth from the *built* backbone and accepts both
protocols: the project's ``get_layer_depth(param_name, prefix='', decay_type='layer_wise')``
(:class:`mmrevcol.models.backbones.base.BaseBackbone`: RevCol, RevColViT, SLaK, HIRIViT, ResidualAttentionNet) and
mmpretrain's ``get_layer_depth(param_name, prefix='')`` (ConvNeXt, ResNet, ViT, Swin, ...). Library backbones without
the method get one from :data:`LAYER_DEPTH_ADAPTERS` (mmpretrain's ``EfficientNet``); any other backbone gets one
error naming it. ``RevColLayerDecayOptimizerConstructor`` is the same constructor requiring a RevCol (the name the
RevCol configs use). Both are registered in mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS``, so the same config works
under ``default_scope='mmdet'``, ``'mmseg'`` and ``'mmpretrain'``::

    optim_wrapper = dict(
        type='OptimWrapper',  # or 'AmpOptimWrapper'
        constructor='BackboneLayerDecayOptimizerConstructor',
        optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
        paramwise_cfg=dict(decay_rate=0.85, decay_type='layer_wise'))

Depth ids: stem 0, ..., everything outside the backbone (neck, heads) ``num - 1``, and
``lr = base_lr * decay_rate ** (num - id - 1)``. No weight decay for 1-D parameters, biases, the reversible shortcut
scales ``alpha`` and the ConvNeXt ``gamma``. Frozen parameters (``requires_grad=False``) are left out.
``decay_rate=1.0`` is plain AdamW with the no-weight-decay rules.
"""
import inspect
import logging
from typing import Callable, Dict, List, Optional, Tuple

from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from ..utils.model import unwrap_model

_KNOWN_KEYS = {'decay_rate', 'decay_type', 'num_layers'}
_DECAY_TYPES = ('layer_wise', 'stage_wise')
#: ``(param_name, prefix, decay_type) -> (layer_id, num_ids)``
DepthFn = Callable[[str, str, str], Tuple[int, int]]


def efficientnet_layer_depth(backbone: nn.Module, param_name: str, prefix: str = '') -> Tuple[int, int]:
    """mmpretrain ``EfficientNet``: the stem conv (``layers.0``) 0, block ``j`` of stage ``layers.i`` one id per
    block in order, the final 1x1 conv the next, everything outside the backbone the last."""
    stages = backbone.layers
    num_blocks = sum(len(stage) for stage in stages[1:-1])
    num = num_blocks + 3
    if not param_name.startswith(prefix):
        return num - 1, num
    parts = param_name[len(prefix):].split('.')
    if parts[0] != 'layers':
        return num - 1, num
    stage = int(parts[1])
    if stage == 0:
        return 0, num
    if stage == len(stages) - 1:
        return num_blocks + 1, num
    return 1 + sum(len(s) for s in stages[1:stage]) + int(parts[2]), num


#: Depth functions ``(backbone, param_name, prefix) -> (id, num)`` for library backbones without
#: ``get_layer_depth``, by class name.
LAYER_DEPTH_ADAPTERS: Dict[str, Callable[..., Tuple[int, int]]] = {'EfficientNet': efficientnet_layer_depth}


def layer_depth_fn(backbone: nn.Module, owner: str = 'BackboneLayerDecayOptimizerConstructor') -> DepthFn:
    """``(param_name, prefix, decay_type) -> (layer_id, num_ids)`` for ``backbone``, whatever protocol it has."""
    name = type(backbone).__name__
    method = getattr(backbone, 'get_layer_depth', None)
    if callable(method):
        if 'decay_type' in inspect.signature(method).parameters:
            return lambda param, prefix, decay_type: method(param, prefix, decay_type=decay_type)
        single = method
    elif name in LAYER_DEPTH_ADAPTERS:
        adapter = LAYER_DEPTH_ADAPTERS[name]

        def single(param, prefix=''):
            return adapter(backbone, param, prefix)
    else:
        raise ValueError(f'{owner}: the backbone {name} has no get_layer_depth(param_name, prefix) and no adapter '
                         f'in LAYER_DEPTH_ADAPTERS ({sorted(LAYER_DEPTH_ADAPTERS)}); layer-wise decay needs to know '
                         'the depth of each parameter — use a plain optim_wrapper for it')

    def run(param: str, prefix: str, decay_type: str) -> Tuple[int, int]:
        if decay_type != 'layer_wise':
            raise ValueError(f"{owner}: the backbone {name} defines layer-wise depths only; use "
                             f"decay_type='layer_wise' (got {decay_type!r})")
        return single(param, prefix)

    return run


def find_backbone(model: nn.Module, backbone_type: Optional[type] = None,
                  owner: str = 'BackboneLayerDecayOptimizerConstructor') -> Tuple[nn.Module, str]:
    """The backbone of ``model`` (of ``backbone_type`` if given) and its parameter-name prefix.

    ``model.backbone`` when the model has one (detectors, segmentors, classifiers), else ``model`` itself when it is a
    backbone with depths, else the one submodule of ``backbone_type`` / with ``get_layer_depth``. Raises
    ``ValueError`` if there is none or more than one.
    """
    def fits(m: nn.Module) -> bool:
        if backbone_type is not None:
            return isinstance(m, backbone_type)
        return callable(getattr(m, 'get_layer_depth', None)) or type(m).__name__ in LAYER_DEPTH_ADAPTERS

    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, nn.Module) and (backbone_type is None or fits(backbone)):
        return backbone, 'backbone.'
    if fits(model):
        return model, ''
    what = backbone_type.__name__ if backbone_type is not None else 'backbone with get_layer_depth'
    found = [(name, m) for name, m in model.named_modules() if name and fits(m)]
    if not found:
        raise ValueError(f'{owner}: no {what} in {type(model).__name__}; use it only with models whose backbone '
                         f'is a {what}')
    if len(found) > 1:
        raise ValueError(f'{owner}: several {what} modules in the model ({[n for n, _ in found]}); layer-wise '
                         'decay would be ambiguous')
    name, module = found[0]
    return module, f'{name}.'


def find_revcol(model: nn.Module) -> Tuple[nn.Module, str]:
    """The RevCol backbone of ``model`` and its parameter-name prefix (``'backbone.'`` for detectors/segmentors).

    ``model`` must already be unwrapped. Raises ``ValueError`` if there is no RevCol or more than one.
    """
    from ..models.backbones.revcol import RevCol  # late import: mmrevcol.models imports mmrevcol.engine users
    return find_backbone(model, RevCol, 'RevColLayerDecayOptimizerConstructor')


def is_no_decay(name: str, param: nn.Parameter) -> bool:
    """No weight decay for 1-D tensors, biases, RevCol's ``alpha`` and layer-scale ``gamma``."""
    last = name.rsplit('.', 1)[-1]
    return param.ndim <= 1 or last == 'bias' or '.alpha.' in f'.{name}' or last == 'gamma'


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BackboneLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper constructor with layer-wise (or stage-wise) learning-rate decay for every backbone of the
    zoo (both ``get_layer_depth`` protocols, and the adapters of :data:`LAYER_DEPTH_ADAPTERS`).

    ``paramwise_cfg`` keys:

    - ``decay_rate`` (float): per-depth lr factor, in (0, 1]. Defaults to 1.0 (no decay).
    - ``decay_type`` (str): ``'layer_wise'`` (e.g. RevCol's official ``sum(layers) + num_columns + 1`` depth ids)
      or ``'stage_wise'`` (stem, one id per stage, the rest; where the backbone defines it).
      Defaults to ``'layer_wise'``.
    - ``num_layers`` (int, optional): accepted for compatibility with mmdet/mmseg configs and ignored (the depth
      structure is read from the built backbone); a warning is logged if it disagrees.

    Every trainable parameter lands in exactly one group, keyed by (depth id, decay / no decay); each group carries
    ``lr``, ``lr_scale``, ``weight_decay``, ``layer_id`` and ``group_name``. One summary table is logged on rank 0.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = set(paramwise_cfg) - _KNOWN_KEYS
        if unknown:
            raise ValueError(f'{type(self).__name__}: unknown paramwise_cfg keys {sorted(unknown)}; '
                             f'supported: {sorted(_KNOWN_KEYS)}')
        paramwise_cfg.setdefault('decay_rate', 1.0)
        paramwise_cfg.setdefault('decay_type', 'layer_wise')
        decay_rate = paramwise_cfg['decay_rate']
        if not (isinstance(decay_rate, (int, float)) and 0 < decay_rate <= 1):
            raise ValueError(f'paramwise_cfg.decay_rate must be in (0, 1], got {decay_rate!r}')
        if paramwise_cfg['decay_type'] not in _DECAY_TYPES:
            raise ValueError(f"paramwise_cfg.decay_type must be one of {_DECAY_TYPES}, "
                             f"got {paramwise_cfg['decay_type']!r}")
        # A non-empty paramwise_cfg makes DefaultOptimWrapperConstructor.__call__ go through add_params.
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        if self.base_lr is None:
            raise ValueError(f'{type(self).__name__}: optimizer.lr must be set (the per-layer lrs '
                             'are base_lr * decay_rate ** (num_ids - id - 1))')
        self.decay_rate = float(decay_rate)
        self.decay_type = paramwise_cfg['decay_type']
        self.group_table: List[dict] = []
        self.num_frozen = 0
        self.family = 'Backbone'

    # ---------------------------------------------------------------------------------------------------------
    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        """Fill ``params`` with one group per (depth id, decay / no decay) for the whole ``module``."""
        model = unwrap_model(module)
        backbone, bb_prefix = self.find_backbone(model)
        bb_prefix = prefix + bb_prefix
        depth = layer_depth_fn(backbone, type(self).__name__)

        groups: Dict[Tuple[int, str], dict] = {}
        self.num_frozen = 0
        self.family = type(backbone).__name__
        for name, param in model.named_parameters(prefix=prefix.rstrip('.')):
            if not param.requires_grad:
                self.num_frozen += 1  # frozen (frozen_stages, or frozen by the user): not optimized
                continue
            layer_id, num = depth(name, bb_prefix, self.decay_type)
            decay = 'no_decay' if is_no_decay(name, param) else 'decay'
            key = (layer_id, decay)
            if key not in groups:
                scale = self.decay_rate**(num - layer_id - 1)
                group = dict(params=[], lr=self.base_lr * scale, lr_scale=scale, layer_id=layer_id,
                             group_name=f'layer_{layer_id}_{decay}')
                if decay == 'no_decay':
                    group['weight_decay'] = 0.
                elif self.base_wd is not None:
                    group['weight_decay'] = self.base_wd
                group['_names'] = []
                groups[key] = group
            groups[key]['params'].append(param)
            groups[key]['_names'].append(name)

        ordered = [groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1] != 'decay'))]
        self.group_table = []
        for group in ordered:
            names = group.pop('_names')
            self.group_table.append(dict(
                group_name=group['group_name'], layer_id=group['layer_id'], lr=group['lr'],
                lr_scale=group['lr_scale'], weight_decay=group.get('weight_decay'), param_names=names,
                num_tensors=len(names), num_elements=sum(p.numel() for p in group['params'])))
        params.extend(ordered)
        num_cfg = self.paramwise_cfg.get('num_layers')
        if groups and num_cfg is not None and num_cfg != num:
            print_log(f'{type(self).__name__}: paramwise_cfg.num_layers={num_cfg} ignored; the built '
                      f'{self.family} has {num} {self.decay_type} depth ids', logger='current',
                      level=logging.WARNING)
        self._log_table(num if groups else None)

    def find_backbone(self, model: nn.Module) -> Tuple[nn.Module, str]:
        return find_backbone(model, owner=type(self).__name__)

    def _log_table(self, num_ids: Optional[int]) -> None:
        if get_rank() != 0:
            return
        head = ('group', 'depth id', 'lr scale', 'lr', 'weight decay', '#tensors', '#params')
        rows = [(g['group_name'], str(g['layer_id']), f"{g['lr_scale']:.4g}", f"{g['lr']:.4g}",
                 'default' if g['weight_decay'] is None else f"{g['weight_decay']:g}", str(g['num_tensors']),
                 str(g['num_elements'])) for g in self.group_table]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = '  '.join(f'{{:{">" if i else "<"}{w}}}' for i, w in enumerate(widths))
        lines = [f'{self.family} layer decay: decay_type={self.decay_type}, decay_rate={self.decay_rate:g}, '
                 f'{num_ids} depth ids, base lr {self.base_lr:g}, {len(rows)} param groups'
                 + (f', {self.num_frozen} frozen tensors left out' if self.num_frozen else ''),
                 fmt.format(*head), fmt.format(*('-' * w for w in widths)), *(fmt.format(*r) for r in rows)]
        print_log('\n'.join(lines), logger='current')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class RevColLayerDecayOptimizerConstructor(BackboneLayerDecayOptimizerConstructor):
    """:class:`BackboneLayerDecayOptimizerConstructor` that requires a RevCol backbone (the RevCol configs' name)."""

    def find_backbone(self, model: nn.Module) -> Tuple[nn.Module, str]:
        return find_revcol(model)
