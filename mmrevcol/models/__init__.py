"""The project's models. Each class registers itself (``@MODELS.register_module()``) in mmengine's root registry:
mmdet, mmseg and mmpretrain registries fall back to their parent, so ``type='RevCol'`` resolves under any of their
default scopes."""
from .backbones import BaseBackbone, HIRIViT, ResidualAttentionNet, RevCol, RevColViT, SLaK
from .classifiers import EMADistillClassifier, EMADistillDataPreprocessor, EMADistillHook  # noqa: F401
from .classifiers import RevColClassifier, RevColClsHead

__all__ = ['BaseBackbone', 'HIRIViT', 'ResidualAttentionNet', 'RevCol', 'RevColViT', 'SLaK', 'RevColClassifier',
           'RevColClsHead']
