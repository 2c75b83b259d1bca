from .revcol import RevCol
from .revcol_vit import RevColViT

__all__ = ['RevCol', 'RevColViT']
