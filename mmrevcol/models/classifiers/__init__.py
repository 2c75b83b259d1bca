from .revcol_classifier import RevColClassifier, RevColClsHead, RevColDecoder

__all__ = ['RevColClassifier', 'RevColClsHead', 'RevColDecoder']
