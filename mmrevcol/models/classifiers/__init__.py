from .ema_distill import EMADistillClassifier, EMADistillHook, class_probability_maps, mixed_teacher_target
from .ema_distill_preprocessor import EMADistillDataPreprocessor, mix_with_mask
from .revcol_classifier import RevColClassifier, RevColClsHead, RevColDecoder

__all__ = ['EMADistillClassifier', 'EMADistillDataPreprocessor', 'EMADistillHook', 'class_probability_maps',
           'mix_with_mask', 'mixed_teacher_target', 'RevColClassifier', 'RevColClsHead', 'RevColDecoder']
