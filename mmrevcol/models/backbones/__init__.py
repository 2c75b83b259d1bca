from .hiri_vit import HIRIViT
from .res_attention import ResidualAttentionNet
from .revcol import RevCol
from .slak import SLaK

__all__ = ['HIRIViT', 'ResidualAttentionNet', 'RevCol', 'SLaK']
