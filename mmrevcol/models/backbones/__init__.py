from .res_attention import ResidualAttentionNet
from .revcol import RevCol

__all__ = ['ResidualAttentionNet', 'RevCol']
