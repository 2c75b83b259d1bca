from .hiri_vit import HIRIViT
from .revcol import RevCol
from .slak import SLaK

__all__ = ['HIRIViT', 'RevCol', 'SLaK']
