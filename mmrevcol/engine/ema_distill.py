"""The hook of EMA distillation (:mod:`mmrevcol.models.classifiers.ema_distill`): the teacher is mmengine's
``EMAHook`` model."""
from mmengine.hooks import EMAHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torch import nn

from mmrevcol.utils.model import unwrap_model

__all__ = ['EMADistillHook']


@HOOKS.register_module()
class EMADistillHook(Hook):
    """Makes the model's ``EMAHook`` average its EMA-distillation teacher. Register after ``EMAHook``."""
    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)
        if not hasattr(model, 'set_teacher'):
            raise TypeError(f'EMADistillHook needs an EMADistillClassifier, got {type(model).__name__}')
        ema_hooks = [h for h in runner.hooks if isinstance(h, EMAHook)]
        if len(ema_hooks) != 1:
            raise RuntimeError(f'EMADistillHook needs exactly one EMAHook in custom_hooks, found {len(ema_hooks)}')
        ema = ema_hooks[0].ema_model
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if has_bn and not ema.update_buffers:
            print_log('EMADistillHook: the model has BatchNorm but EMAHook(update_buffers=False): the teacher will '
                      'use its initial BN statistics; set update_buffers=True', logger='current', level=30)
        model.set_teacher(ema.module)
