from .hiri_vit import HIRIViT
from .revcol import RevCol

__all__ = ['HIRIViT', 'RevCol']
