"""``CheckpointLoadingHook``: ``load_from``, ``--resume`` and test checkpoints through the one loading policy.

mmengine's Runner loads those checkpoints with ``strict=False``: a checkpoint of another architecture, an official
file in another key layout, or 3x3 kernels for a 7x7 model would leave parts of the model random with only
warnings. This hook edits the loaded checkpoint in ``after_load_checkpoint`` (before it reaches the model) with
:func:`mmrevcol.checkpoint.prepare_model_checkpoint`: official layouts are converted, kernels padded (never on
resume), and anything that would stay unloaded is a :class:`~mmrevcol.checkpoint.CheckpointMismatchError`.
Configs state it in ``default_hooks`` through ``configs/_base_/runtime/safety.py`` (key ``checkpoint_loading``), so
every entry point (the project's tools, mmdet's/mmseg's ``tools/train.py``, ``mim train``, ``Runner.from_cfg``) loads
the same way; no tool adds it.
"""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

from ..checkpoint import prepare_model_checkpoint
from ..checkpoint.core import LOAD_MODES
from ..utils.model import unwrap_model


def loading_mode(runner) -> str:
    """'resume' (``Runner.resume``), 'test' (``Runner.test``/``val``, no train loop) or 'load_from'."""
    if getattr(runner, '_resume', False):
        return 'resume'
    return 'load_from' if isinstance(getattr(runner, '_train_loop', None), BaseLoop) else 'test'


@HOOKS.register_module()
class CheckpointLoadingHook(Hook):
    """Convert, adapt and strictly check every checkpoint the Runner loads into the model.

    Args:
        allow_partial (bool): Load what fits and log (one line) what stays random or unused, instead of an error.
            For deliberate partial loads only. Defaults to False.
        allow_backbone_only (bool): ``load_from`` may be a backbone-only checkpoint (e.g. an official ImageNet
            file); necks and heads stay at their initialisation (logged). Defaults to False, which points such
            files at ``model.backbone.init_cfg``.
        mode (str, optional): Force 'load_from', 'resume' or 'test'; by default read from the runner.
        adapt_options (dict, optional): Options of the backbones' ``adapt`` step (RevCol: kernel padding ``std``,
            ``seed``).
    """
    priority = 'VERY_HIGH'

    def __init__(self, allow_partial: bool = False, allow_backbone_only: bool = False, mode: Optional[str] = None,
                 adapt_options: Optional[dict] = None):
        if mode is not None and mode not in LOAD_MODES:
            raise ValueError(f'mode must be one of {LOAD_MODES} or None, got {mode!r}')
        self.allow_partial = allow_partial
        self.allow_backbone_only = allow_backbone_only
        self.mode = mode
        self.adapt_options = adapt_options or {}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        mode = self.mode or loading_mode(runner)
        weights = prepare_model_checkpoint(
            unwrap_model(runner.model), checkpoint, mode, allow_partial=self.allow_partial,
            allow_backbone_only=self.allow_backbone_only, adapt_options=self.adapt_options)
        checkpoint['state_dict'] = weights  # what mmengine loads into the model next


def ensure_loading_hook(cfg, mode: Optional[str] = None) -> None:
    """Add :class:`CheckpointLoadingHook` to ``cfg.custom_hooks`` unless the config states it (or a subclass) in
    ``default_hooks`` or ``custom_hooks``; ``mode`` is set on the hook found or added.

    For scripts that build a Runner from a config without ``configs/_base_/runtime/safety.py``; the project's tools
    do not call it (the shipped configs state the hook).
    """
    names = {'CheckpointLoadingHook', 'KernelPaddingHook'}
    hooks = list(cfg.get('custom_hooks', None) or [])
    for hook in list((cfg.get('default_hooks', None) or {}).values()) + hooks:
        if isinstance(hook, dict) and (hook.get('type') in names or getattr(hook.get('type'), '__name__', '') in names):
            if mode is not None:
                hook['mode'] = mode
            return
    hooks.append(dict(type='CheckpointLoadingHook', mode=mode))
    cfg.custom_hooks = hooks
