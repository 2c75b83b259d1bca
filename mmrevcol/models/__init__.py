from mmengine.registry import MODELS

from .backbones import ResidualAttentionNet, RevCol

# Registered in mmengine's root registry: mmdet, mmseg and mmpretrain registries fall back to their parent, so
# `type='RevCol'` resolves under any of their default scopes.
MODELS.register_module(module=RevCol)
MODELS.register_module(module=ResidualAttentionNet)

__all__ = ['ResidualAttentionNet', 'RevCol']
