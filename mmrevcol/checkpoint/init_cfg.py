"""``init_cfg``: the strict ``Pretrained`` initializer and a readable check of initializer types.

mmengine's ``PretrainedInit`` loads with ``strict=False``: a checkpoint of another architecture leaves the module
random with a warning. Importing mmrevcol registers :class:`StrictPretrainedInit` as ``Pretrained`` in mmengine's
root initializer registry, so every ``init_cfg=dict(type='Pretrained', ...)`` (RevCol, SLaK, mmpretrain's and
timm's backbones alike) goes through :func:`mmrevcol.checkpoint.load_pretrained`: official layouts converted,
every parameter of the module loaded or a named error. Keys of the checkpoint that the module does not have (a
classification head) are listed in one log line.
"""
from typing import Iterable, Optional

from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn

from .core import load_pretrained


class StrictPretrainedInit:
    """``init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix=None, map_location='cpu', use_ema=False)``.

    Args:
        checkpoint (str): Checkpoint file (or URL that mmengine can read).
        prefix (str, optional): Keep only keys under this prefix (e.g. ``'backbone.'``), removing it. By default
            ``backbone.`` is removed when the file has such keys.
        map_location (str): Defaults to 'cpu'.
        use_ema (bool): Load the EMA weights of the checkpoint. Defaults to False (EMA weights are used anyway
            when they are all the file holds).
    """

    def __init__(self, checkpoint: str, prefix: Optional[str] = None, map_location: str = 'cpu',
                 use_ema: bool = False):
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.map_location = map_location
        self.use_ema = use_ema

    def __call__(self, module: nn.Module) -> None:
        load_pretrained(module, self.checkpoint, prefix=self.prefix, map_location=self.map_location,
                        use_ema=self.use_ema)

    def _get_init_info(self) -> str:
        return f'{self.__class__.__name__}: load from {self.checkpoint}'


WEIGHT_INITIALIZERS.register_module(name='Pretrained', module=StrictPretrainedInit, force=True)


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
        if kind == 'Pretrained' and not item.get('checkpoint'):
            raise ValueError(f"{where}: type='Pretrained' needs checkpoint=PATH")


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

