from mmengine.registry import MODELS

from .backbones import HIRIViT, ResidualAttentionNet, RevCol, RevColViT, SLaK
from .classifiers import EMADistillClassifier, EMADistillDataPreprocessor, EMADistillHook  # noqa: F401
from .classifiers import RevColClassifier, RevColClsHead

# Registered in mmengine's root registry: mmdet, mmseg and mmpretrain registries fall back to their parent, so
# `type='RevCol'` resolves under any of their default scopes.
MODELS.register_module(module=RevCol)
MODELS.register_module(module=SLaK)
MODELS.register_module(module=HIRIViT)
MODELS.register_module(module=ResidualAttentionNet)
MODELS.register_module(module=RevColViT)
MODELS.register_module(module=RevColClassifier)
MODELS.register_module(module=RevColClsHead)

__all__ = ['HIRIViT', 'ResidualAttentionNet', 'RevCol', 'RevColViT', 'SLaK', 'RevColClassifier', 'RevColClsHead']
