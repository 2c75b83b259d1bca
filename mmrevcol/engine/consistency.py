"""Stop at start when the model's heads and the dataset disagree on the number of classes.

A segmentation head with ``num_classes=19`` on a 4-class dataset (without ``class_weight``, which would fail) trains
without a word: 15 outputs never see a target, and the metrics are computed over the dataset's 4 classes. A
detector's box head with more classes than the dataset only wastes outputs, with fewer it fails far later (label
index out of range on the first image holding such a class). :class:`ClassConsistencyHook` compares, in
``before_run``, the ``num_classes`` of every head of the model (``decode_head``, ``auxiliary_head``, the box and
mask heads of every stage, RetinaNet/FCOS heads, Mask2Former's things + stuff; RPN heads are class-agnostic and
skipped) with the number of ``classes`` in the metainfo of the dataset the run uses (train, or test/val for
evaluation-only runs), and raises one :class:`~mmrevcol.utils.errors.ConfigConsistencyError` naming each key to
change. ``allow_mismatch=True`` turns it into a warning, for deliberate cases.
"""
import re
from typing import List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

from ..utils.errors import ConfigConsistencyError
from ..utils.model import unwrap_model
from .hook_args import check_bool

__all__ = ['ClassConsistencyHook', 'head_num_classes']

_CLASS_AGNOSTIC = ('RPNHead', 'StageCascadeRPNHead', 'CascadeRPNHead', 'GARPNHead', 'FusedSemanticHead',
                   'MaskFormerFusionHead')


def head_num_classes(model) -> List[Tuple[str, int]]:
    """``(config key, num_classes)`` of every class-dependent head of ``model`` (outermost modules only)."""
    found, seen = [], []
    for name, module in unwrap_model(model).named_modules():
        value = getattr(module, 'num_classes', None)
        if not name or isinstance(value, bool) or not isinstance(value, int):
            continue
        if type(module).__name__ in _CLASS_AGNOSTIC or 'rpn' in name.lower():
            continue
        if any(name.startswith(prefix + '.') for prefix in seen):
            continue
        seen.append(name)
        key = 'model.' + re.sub(r'\.(\d+)(?=\.|$)', r'[\1]', name) + '.num_classes'
        found.append((key, value))
    return found


def _run_dataset(runner):
    """The dataset this run uses, and which split: the train set when training, else the test or val set."""
    for split in ('train', 'test', 'val'):
        loop = getattr(runner, f'_{split}_loop', None)
        if isinstance(loop, BaseLoop):
            return split, loop.dataloader.dataset
    return None, None


def _classes(dataset) -> Optional[tuple]:
    metainfo = getattr(dataset, 'metainfo', None) or {}
    classes = metainfo.get('classes') if isinstance(metainfo, dict) else None
    return tuple(classes) if classes else None


@HOOKS.register_module()
class ClassConsistencyHook(Hook):
    """Raise at start when a head's ``num_classes`` differs from the dataset's class count (see the module doc).

    Args:
        allow_mismatch (bool): Only log the mismatch (a deliberate setting, e.g. a head pretrained on more
            classes). Defaults to False.
    """
    priority = 'VERY_HIGH'

    def __init__(self, allow_mismatch: bool = False):
        self.allow_mismatch = check_bool(type(self).__name__, 'allow_mismatch', allow_mismatch)

    def before_run(self, runner) -> None:
        split, dataset = _run_dataset(runner)
        classes = _classes(dataset) if dataset is not None else None
        if classes is None:
            return
        wrong = [(key, n) for key, n in head_num_classes(runner.model) if n != len(classes)]
        if not wrong:
            return
        shown = ', '.join(map(repr, classes[:8])) + (', ...' if len(classes) > 8 else '')
        heads = ', '.join(f'{key}={n}' for key, n in wrong)
        message = (f'{heads} but the {split} dataset ({type(dataset).__name__}) has {len(classes)} classes '
                   f'({shown}): set {" and ".join(key for key, _ in wrong)} to {len(classes)}, or, if this is '
                   'deliberate, --cfg-options default_hooks.consistency.allow_mismatch=True')
        if self.allow_mismatch:
            runner.logger.warning(f'ClassConsistencyHook (allow_mismatch=True): {message.split(": set")[0]}')
            return
        raise ConfigConsistencyError(message)
