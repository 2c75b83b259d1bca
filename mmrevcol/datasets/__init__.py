from .anchor_filter import SkipImagesWithoutAnchors

__all__ = ['SkipImagesWithoutAnchors']
