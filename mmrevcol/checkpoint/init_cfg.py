"""``init_cfg``: the opt-in strict ``Pretrained`` initializer and a readable check of initializer types.

mmengine's ``PretrainedInit`` loads with ``strict=False``: a checkpoint of another architecture leaves the module
random with a warning. The project's backbones never use it: their ``init_weights``
(:class:`mmrevcol.models.backbones.base.BaseBackbone`) send every ``Pretrained`` through
:func:`mmrevcol.checkpoint.load_pretrained` (official layouts converted, every parameter of the module loaded or a
named error; checkpoint keys the module lacks, such as a classification head, listed in one log line).

Any other module opts in with one key: ``init_cfg=dict(type='Pretrained', checkpoint=..., strict=True)``. Without
it, :class:`PretrainedInit` *is* mmengine's initializer (a subclass that calls it unchanged), so importing mmrevcol
does not change how an unrelated model loads. The type name stays ``'Pretrained'`` because mmengine and the
libraries test for that name (mmengine applies it after the children's own ``init_weights``; mmpretrain's
ShuffleNet, for one, skips its default init when it sees it).
"""
from typing import Iterable, Optional

from mmengine.model.weight_init import PretrainedInit as _MMEnginePretrainedInit
from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn

from .core import load_pretrained

PRETRAINED_TYPES = ('Pretrained', )


class PretrainedInit(_MMEnginePretrainedInit):
    """``init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix=None, map_location='cpu'[, strict=True,
    use_ema=False])``.

    Args:
        checkpoint (str): Checkpoint file (or URL that mmengine can read).
        prefix (str, optional): Keep only keys under this prefix (e.g. ``'backbone.'``), removing it. With
            ``strict=True`` and no prefix, ``backbone.`` is removed when the file has such keys.
        map_location (str): Defaults to 'cpu'.
        strict (bool): Load through mmrevcol's policy: official layouts converted, every parameter of the module
            loaded or a :class:`~mmrevcol.checkpoint.CheckpointMismatchError` naming the keys. False (default):
            exactly mmengine's ``PretrainedInit`` (``strict=False``, mismatches only warned).
        use_ema (bool): With ``strict``: load the EMA weights of the checkpoint (they are used anyway when they are
            all the file holds). Defaults to False.
    """

    def __init__(self, checkpoint: str, prefix: Optional[str] = None, map_location: str = 'cpu',
                 strict: bool = False, use_ema: bool = False):
        super().__init__(checkpoint, prefix=prefix, map_location=map_location)
        if use_ema and not strict:
            raise ValueError("init_cfg Pretrained: use_ema=True needs strict=True (mmengine's loader has no EMA "
                             'option)')
        self.strict = bool(strict)
        self.use_ema = bool(use_ema)

    def __call__(self, module: nn.Module) -> None:
        if not self.strict:
            return super().__call__(module)
        load_pretrained(module, self.checkpoint, prefix=self.prefix, map_location=self.map_location,
                        use_ema=self.use_ema)

    def _get_init_info(self) -> str:
        return f'{self.__class__.__name__}: load from {self.checkpoint}' + (' (strict)' if self.strict else '')


WEIGHT_INITIALIZERS.register_module(name='Pretrained', module=PretrainedInit, force=True)


def check_init_cfg(init_cfg, where: str = 'init_cfg') -> None:
    """Raise ``ValueError`` naming the valid types when ``init_cfg`` names an unknown initializer."""
    items: Iterable = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    for item in items:
        if item is None:
            continue
        if not isinstance(item, dict) or 'type' not in item:
            raise ValueError(f'{where} must be a dict with a "type" (or a list of them), got {item!r}')
        kind = item['type']
        if isinstance(kind, str) and kind not in WEIGHT_INITIALIZERS.module_dict:
            raise ValueError(f'{where}: unknown initializer type {kind!r}; valid types: '
                             f'{sorted(WEIGHT_INITIALIZERS.module_dict)}')
        if kind in PRETRAINED_TYPES and not item.get('checkpoint'):
            raise ValueError(f"{where}: type={kind!r} needs checkpoint=PATH")


def check_model_init_cfgs(model_cfg, root: str = 'model') -> None:
    """:func:`check_init_cfg` on every ``init_cfg`` of a model config (pre-flight of tools/train.py, test.py)."""
    if isinstance(model_cfg, dict):
        for key, value in model_cfg.items():
            path = f'{root}.{key}'
            if key == 'init_cfg':
                check_init_cfg(value, path)
            else:
                check_model_init_cfgs(value, path)
    elif isinstance(model_cfg, (list, tuple)):
        for i, value in enumerate(model_cfg):
            check_model_init_cfgs(value, f'{root}[{i}]')

