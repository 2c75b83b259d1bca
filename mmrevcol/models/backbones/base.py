"""The one backbone contract of the project (docs/contributing.md).

Every project backbone (``RevCol``, ``RevColViT``, ``SLaK``, ``HIRIViT``, ``ResidualAttentionNet``) stands on
:class:`BaseBackbone`, itself on mmpretrain's ``BaseBackbone``. The base validates and implements the knobs users
set in configs — ``out_indices``, ``frozen_stages``, ``norm_eval``, ``with_cp``, ``init_cfg`` — and the layer-decay
protocol ``get_layer_depth(param_name, prefix='', decay_type='layer_wise')``; a subclass only says what its stem,
stages and depth ids are.
"""
import copy
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from mmpretrain.models.backbones.base_backbone import BaseBackbone as _MMPretrainBaseBackbone
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...checkpoint import check_init_cfg, load_pretrained
from ...checkpoint.init_cfg import PRETRAINED_TYPES
from ..reversible import run_columns

DECAY_TYPES = ('layer_wise', 'stage_wise')


def parse_out_indices(out_indices: Union[int, Sequence[int]], num_stages: int, owner: str) -> List[int]:
    """``out_indices`` as non-negative stage indices; negative ones count from the end. Names the valid range."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    if not isinstance(out_indices, (list, tuple)) or not out_indices:
        raise ValueError(f'{owner}: out_indices must be an int or a non-empty list of ints in '
                         f'[{-num_stages}, {num_stages - 1}], got {out_indices!r}')
    parsed = []
    for i in out_indices:
        if not isinstance(i, int) or isinstance(i, bool) or not -num_stages <= i < num_stages:
            raise ValueError(f'{owner}: out_indices must be ints in [{-num_stages}, {num_stages - 1}] '
                             f'({num_stages} stages), got {list(out_indices)}')
        parsed.append(i % num_stages)
    if len(set(parsed)) != len(parsed):
        raise ValueError(f'{owner}: out_indices name a stage twice: {list(out_indices)}')
    return parsed


def check_frozen_stages(frozen_stages: int, num_stages: int, owner: str) -> int:
    if not isinstance(frozen_stages, int) or isinstance(frozen_stages, bool) \
            or not -1 <= frozen_stages <= num_stages:
        raise ValueError(f'{owner}: frozen_stages must be an int in [-1, {num_stages}] (-1: nothing, 0: the stem, '
                         f'k: the stem and stages 0..k-1), got {frozen_stages!r}')
    return frozen_stages


class BaseBackbone(_MMPretrainBaseBackbone):
    """Shared base of the project's backbones.

    Subclasses set ``num_stages`` (class or instance attribute, before calling ``super().__init__``), build their
    modules, call ``self._freeze_stages()`` at the end of ``__init__``, and implement:

    - ``forward(x) -> tuple`` of NCHW-contiguous maps of the stages in ``out_indices``;
    - ``stem_modules()`` and ``stage_modules(i)``: what ``frozen_stages`` freezes (``frozen_parameters(k)`` for
      loose parameters, e.g. RevCol's α);
    - ``init_from_scratch()``: the family's initialisation when ``init_cfg`` is None;
    - ``layer_id(name, decay_type)`` and ``num_layer_ids(decay_type)`` for layer-wise LR decay (``decay_types``
      lists the supported ones).

    Args:
        out_indices (int | Sequence[int]): Stages to return; negative indices count from the end.
        frozen_stages (int): -1 freezes nothing; 0 the stem; ``k >= 1`` the stem and stages ``0..k-1`` (no
            gradients, eval mode).
        norm_eval (bool): Keep every BatchNorm in eval mode while training (frozen statistics). A no-op for a
            backbone without BatchNorm.
        with_cp (bool): Gradient checkpointing of the backbone's repeated unit (recompute it in backward).
        init_cfg (dict | list, optional): None: the family's own initialisation. ``dict(type='Pretrained',
            checkpoint=PATH[, prefix='backbone.'])``: loaded strictly (whatever its ``strict`` says) through
            :func:`mmrevcol.checkpoint.load_pretrained` (official layouts converted, every parameter loaded or a
            named error).
    """
    num_stages: int = 4
    decay_types: Tuple[str, ...] = ('layer_wise', )
    #: Named architectures (``arch='tiny'``), their aliases (``'t'``), and the keys of the dict form.
    arch_settings: Dict[str, dict] = {}
    arch_aliases: Dict[str, str] = {}
    arch_required: Tuple[str, ...] = ()
    arch_optional: Tuple[str, ...] = ()

    def __init__(self,
                 out_indices: Union[int, Sequence[int]] = -1,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None):
        owner = type(self).__name__
        check_init_cfg(init_cfg, f'{owner} init_cfg')
        super().__init__(init_cfg=init_cfg)
        self.out_indices = parse_out_indices(out_indices, self.num_stages, owner)
        self.frozen_stages = check_frozen_stages(frozen_stages, self.num_stages, owner)
        self.norm_eval = bool(norm_eval)
        self.with_cp = bool(with_cp)

    # ---------------------------------------------------------------------------------------------------------
    @classmethod
    def resolve_arch(cls, arch: Union[str, int, dict]) -> dict:
        """A copy of the named setting (case-insensitive, aliases, ints as names) or of the dict, whose keys are
        checked against ``arch_required``/``arch_optional``. Errors name the choices. Subclasses validate values."""
        owner = cls.__name__
        if isinstance(arch, int) and not isinstance(arch, bool):
            arch = str(arch)
        if isinstance(arch, str):
            key = arch.lower()
            name = cls.arch_aliases.get(key, key)
            if name not in cls.arch_settings:
                aliases = f' (aliases {sorted(cls.arch_aliases)})' if cls.arch_aliases else ''
                raise ValueError(f'Unknown {owner} arch {arch!r}; choose one of {sorted(cls.arch_settings)}{aliases} '
                                 f'or a dict with keys {list(cls.arch_required)}')
            return copy.deepcopy(dict(cls.arch_settings[name]))
        if not isinstance(arch, dict):
            raise TypeError(f'{owner}: arch must be a name or a dict, got {type(arch).__name__}')
        missing = set(cls.arch_required) - set(arch)
        unknown = set(arch) - set(cls.arch_required) - set(cls.arch_optional)
        if missing or unknown:
            raise ValueError(f'{owner} arch dict needs keys {list(cls.arch_required)} (optional '
                             f'{list(cls.arch_optional)}); missing {sorted(missing)}, unknown {sorted(unknown)}')
        return copy.deepcopy(dict(arch))

    @staticmethod
    def check_positive_ints(arch: dict, key: str, length: int, owner: str) -> List[int]:
        """``arch[key]`` as a list of ``length`` positive ints, or a ``ValueError`` naming the key."""
        value = arch[key]
        if not isinstance(value, (list, tuple)) or len(value) != length \
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise ValueError(f'{owner}: arch[{key!r}] must be {length} positive ints, got {value!r}')
        return list(value)

    # ---------------------------------------------------------------------------------------------------------
    # frozen stages and norm_eval
    def stem_modules(self) -> Sequence[nn.Module]:
        """Modules frozen by ``frozen_stages >= 0``."""
        raise NotImplementedError

    def stage_modules(self, index: int) -> Sequence[nn.Module]:
        """Modules of stage ``index`` (with the downsampling that enters it and its output norm, if any)."""
        raise NotImplementedError

    def frozen_parameters(self, frozen_stages: int) -> Iterator[nn.Parameter]:
        """Parameters outside the frozen modules that freezing ``frozen_stages`` also freezes (none by default)."""
        return iter(())

    def frozen_modules(self) -> Iterator[nn.Module]:
        if self.frozen_stages >= 0:
            yield from self.stem_modules()
        for i in range(max(self.frozen_stages, 0)):
            yield from self.stage_modules(i)

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False
        for param in self.frozen_parameters(self.frozen_stages):
            param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ---------------------------------------------------------------------------------------------------------
    # initialisation
    def init_from_scratch(self) -> None:
        """The family's own initialisation (``init_cfg=None``). Default: the modules' own ``reset_parameters``."""

    def init_weights(self) -> None:
        if self.init_cfg is None:
            self.init_from_scratch()
            self._is_init = True
            return
        cfgs = self.init_cfg if isinstance(self.init_cfg, (list, tuple)) else [self.init_cfg]
        pretrained = [c for c in cfgs if c.get('type') in PRETRAINED_TYPES]
        others = [c for c in cfgs if c.get('type') not in PRETRAINED_TYPES]
        if others:  # e.g. dict(type='TruncNormal', layer='Linear'): mmengine's initializers, then the checkpoint
            self.init_cfg = others
            try:
                super().init_weights()
            finally:
                self.init_cfg = cfgs if len(cfgs) > 1 else cfgs[0]
        else:
            self.init_from_scratch()
        for cfg in pretrained:
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                            map_location=cfg.get('map_location', 'cpu'), use_ema=cfg.get('use_ema', False))
        self._is_init = True

    # ---------------------------------------------------------------------------------------------------------
    # layer-wise learning-rate decay
    def num_layer_ids(self, decay_type: str = 'layer_wise') -> int:
        """Number of depth ids for ``decay_type`` (the last one is everything outside the backbone)."""
        raise NotImplementedError

    def layer_id(self, name: str, decay_type: str) -> int:
        """Depth id of the backbone parameter ``name`` (no prefix) for ``decay_type``."""
        raise NotImplementedError

    def get_layer_depth(self, param_name: str, prefix: str = '', decay_type: str = 'layer_wise') -> Tuple[int, int]:
        """Depth id of a parameter for layer-wise LR decay, and the number of ids.

        mmpretrain's protocol (``get_layer_depth(param_name, prefix='')``) extended by ``decay_type``. Parameters
        not under ``prefix`` (necks, heads) get the last id, ``num - 1``; the lr scale is
        ``decay_rate ** (num - id - 1)``.

        Returns:
            Tuple[int, int]: (layer id, number of layer ids).
        """
        if decay_type not in self.decay_types:
            raise ValueError(f'{type(self).__name__}: decay_type must be one of {self.decay_types}, '
                             f'got {decay_type!r}')
        num = self.num_layer_ids(decay_type)
        if not param_name.startswith(prefix):
            return num - 1, num
        return self.layer_id(param_name[len(prefix):], decay_type), num


class ColumnBackbone(BaseBackbone):
    """What the reversible column families (RevCol, RevCol-ViT) share on top of :class:`BaseBackbone`.

    A stem feeds ``num_columns`` columns of 4 levels (``self.columns``, each with ``levels`` and, after the first,
    ``alpha``); a "stage" is a level of every column. Subclasses set ``self.columns``, ``self.layers`` (blocks per
    level), ``self.num_columns``, ``self.reversible``, ``self.drop_path_rate`` and name their stem parameters in
    ``stem_prefixes``.
    """
    num_stages = 4
    decay_types = ('layer_wise', 'stage_wise')
    stem_prefixes: Tuple[str, ...] = ('stem', )

    def run_columns(self, x, on_column=None):
        """The last column's levels for the stem output ``x``, in the mode the knobs select
        (:func:`mmrevcol.models.reversible.run_columns`)."""
        return run_columns(self.columns, x, self.reversible, self.with_cp,
                           replay_rng=self.training and self.drop_path_rate > 0, on_column=on_column)

    def stage_modules(self, index: int) -> List[nn.Module]:
        return [column.levels[index] for column in self.columns]

    def frozen_parameters(self, frozen_stages: int) -> Iterator[nn.Parameter]:
        for column in self.columns[1:]:
            yield from column.alpha[:max(frozen_stages, 0)]

    def num_layer_ids(self, decay_type: str = 'layer_wise') -> int:
        """``layer_wise`` (official RevCol): ``sum(layers) + num_columns + 1``; ``stage_wise``: stem, 4 levels,
        the rest."""
        return sum(self.layers) + self.num_columns + 1 if decay_type == 'layer_wise' else self.num_stages + 2

    def layer_id(self, name: str, decay_type: str) -> int:
        """``layer_wise`` (official RevCol): stem 0; ``columns.j.alpha.l`` j+1; the fusion of level l in column j
        ``sum(layers[:l]) + j + 1``; its block b ``sum(layers[:l]) + b + j + 1``; anything else the last id.
        ``stage_wise``: stem 0; everything of level l (all columns, alpha included) l+1."""
        parts = name.split('.')
        if parts[0] in self.stem_prefixes:
            return 0
        if parts[0] != 'columns':
            return self.num_layer_ids(decay_type) - 1
        column, level = int(parts[1]), int(parts[3])  # columns.j.alpha.l / columns.j.levels.l....
        if decay_type == 'stage_wise':
            return level + 1
        if parts[2] == 'alpha':
            return column + 1
        block = int(parts[5]) if parts[4] == 'blocks' else 0
        return sum(self.layers[:level]) + block + column + 1
