from .revcol import RevCol

__all__ = ['RevCol']
