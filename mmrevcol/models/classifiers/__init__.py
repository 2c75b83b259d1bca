from .ema_distill import (EMADistillClassifier, EMADistillDataPreprocessor, EMADistillHook, class_probability_maps,
                          mix_with_mask, mixed_teacher_target)

__all__ = ['EMADistillClassifier', 'EMADistillDataPreprocessor', 'EMADistillHook', 'class_probability_maps',
           'mix_with_mask', 'mixed_teacher_target']
