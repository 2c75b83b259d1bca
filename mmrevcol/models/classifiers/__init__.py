from .ema_distill import (EMADistillClassifier, EMADistillDataPreprocessor, EMADistillHook, class_probability_maps,
                          mix_with_mask, mixed_teacher_target)
from .revcol_classifier import RevColClassifier, RevColClsHead, RevColDecoder

__all__ = ['EMADistillClassifier', 'EMADistillDataPreprocessor', 'EMADistillHook', 'class_probability_maps',
           'mix_with_mask', 'mixed_teacher_target', 'RevColClassifier', 'RevColClsHead', 'RevColDecoder']
