from mmengine.registry import MODELS

from .backbones import HIRIViT, ResidualAttentionNet, RevCol, SLaK
from .classifiers import EMADistillClassifier, EMADistillDataPreprocessor, EMADistillHook  # noqa: F401

# Registered in mmengine's root registry: mmdet, mmseg and mmpretrain registries fall back to their parent, so
# `type='RevCol'` resolves under any of their default scopes.
MODELS.register_module(module=RevCol)
MODELS.register_module(module=SLaK)
MODELS.register_module(module=HIRIViT)
MODELS.register_module(module=ResidualAttentionNet)

__all__ = ['HIRIViT', 'ResidualAttentionNet', 'RevCol', 'SLaK']
