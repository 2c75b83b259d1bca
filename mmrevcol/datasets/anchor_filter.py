"""Skip training images on which an anchor head has no anchor, instead of crashing the run.

With ``allowed_border >= 0`` (mmdet's RPN default is 0), mmdet's ``AnchorHead`` only trains on anchors lying
inside the resized image and raises ``ValueError: There is no valid anchor inside the image boundary`` when there
is none. An image with an extreme aspect ratio (e.g. 20x2000) is resized to fit the long side and becomes a few
pixels tall (13x1333 at scale (1333, 800), 1x128 in the demo), thinner than the smallest anchor: one such image in
the training set kills the run, at whatever iteration the sampler reaches it.

:class:`SkipImagesWithoutAnchors` runs at the end of the train pipeline, applies mmdet's own test
(``anchor_inside_flags`` over the head's anchor grid for the final image shape) and returns ``None`` for such an
image, which mmengine's dataset answers by fetching another sample. Each skipped file is named once in a warning.
"""
import logging
import math
from typing import Optional, Tuple

import torch
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS

__all__ = ['SkipImagesWithoutAnchors']


@TRANSFORMS.register_module()
class SkipImagesWithoutAnchors(BaseTransform):
    """Drop a training sample whose image holds no anchor of the head (see the module doc).

    Args:
        anchor_generator (dict): The head's ``anchor_generator`` config (``rpn_head`` / ``bbox_head``).
        allowed_border (float): The head's ``train_cfg.allowed_border``; below 0 every anchor counts and nothing
            is skipped.
    """

    def __init__(self, anchor_generator: dict, allowed_border: float = 0):
        from mmdet.registry import TASK_UTILS
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope('mmdet'):  # also when built under another default scope
            self.prior_generator = TASK_UTILS.build(anchor_generator)
        self.allowed_border = allowed_border
        self._has_anchor = {}
        self._warned = set()

    def has_anchor_inside(self, img_shape: Tuple[int, int]) -> bool:
        """Whether some anchor lies inside an image of ``img_shape`` (h, w), as mmdet's AnchorHead tests it."""
        if self.allowed_border < 0:
            return True
        h, w = int(img_shape[0]), int(img_shape[1])
        if (h, w) not in self._has_anchor:
            from mmdet.models.task_modules.prior_generators import anchor_inside_flags
            sizes = [(math.ceil(h / s[1]), math.ceil(w / s[0])) for s in self.prior_generator.strides]
            anchors = torch.cat(self.prior_generator.grid_priors(sizes, device='cpu'))
            valid = torch.ones(len(anchors), dtype=torch.bool)
            if len(self._has_anchor) > 10000:  # multi-scale training: bounded memory
                self._has_anchor.clear()
            self._has_anchor[(h, w)] = bool(anchor_inside_flags(anchors, valid, (h, w), self.allowed_border).any())
        return self._has_anchor[(h, w)]

    def transform(self, results: dict) -> Optional[dict]:
        if self.has_anchor_inside(results['img_shape']):
            return results
        path = results.get('img_path', '?')
        if path not in self._warned:
            self._warned.add(path)
            print_log(f'skipping training image {path}: {results.get("ori_shape")} (h, w) becomes '
                      f'{tuple(results["img_shape"][:2])} after the pipeline, too thin for any anchor of the head '
                      f'(mmdet would stop with "no valid anchor inside the image boundary")', logger='current',
                      level=logging.WARNING)
        return None

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(allowed_border={self.allowed_border})'
