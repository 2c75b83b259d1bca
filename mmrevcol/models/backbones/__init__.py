from .base import BaseBackbone, ColumnBackbone
from .hiri_vit import HIRIViT
from .res_attention import ResidualAttentionNet
from .revcol import RevCol
from .revcol_vit import RevColViT
from .slak import SLaK

__all__ = ['BaseBackbone', 'ColumnBackbone', 'HIRIViT', 'ResidualAttentionNet', 'RevCol', 'RevColViT', 'SLaK']
