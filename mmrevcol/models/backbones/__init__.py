from .revcol import RevCol
from .slak import SLaK

__all__ = ['RevCol', 'SLaK']
