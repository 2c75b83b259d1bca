"""EMA distillation (HIRI-ViT, Sec. 4.5) for mmpretrain: the EMA of the student teaches it on CutMix/Mixup samples.

For a mixed sample ``x~ = M * x_a + (1 - M) * x_b`` with label ``y~ = lam * y_a + (1 - lam) * y_b``, the teacher
(the EMA model) sees the two *sources* ``x_a`` and ``x_b`` without its final average pooling, giving class-probability
maps ``P_a``, ``P_b``; they are mixed with the same mask and pooled, ``y^ = AvgPool(M * P_a + (1 - M) * P_b)``, and
the student learns ``y_bar = alpha * y~ + (1 - alpha) * y^``. Mixup is the case ``M = lam`` everywhere.

Three pieces, none specific to a backbone, in three modules:

- :class:`EMADistillDataPreprocessor` (:mod:`.ema_distill_preprocessor`): mmpretrain's ``ClsDataPreprocessor``
  whose Mixup/CutMix also record, per sample, the unmixed image (``mix_source``), the partner's batch index
  (``mix_index``) and the mask of its own pixels (``mix_mask``). It samples exactly as mmpretrain's
  ``Mixup``/``CutMix`` do (same random calls, same boxes).
- :class:`EMADistillClassifier` (this module): an ``ImageClassifier`` whose loss replaces the mixed label by
  ``y_bar``. Any backbone whose last output is a map, with a ``GlobalAveragePooling`` neck (the pooling the teacher
  drops) or no neck, and a head that maps pooled features to logits (``LinearClsHead``, ...): the head runs on every
  location.
- :class:`EMADistillHook` (:mod:`mmrevcol.engine.ema_distill`): hands mmengine's ``EMAHook`` model to the
  classifier as its teacher (the teacher is mmengine's ``ExponentialMovingAverage`` of the whole classifier; nothing is duplicated, and validation/checkpoints
  keep EMAHook's behaviour).

Config sketch (see ``configs/hiri_vit/hiri_vit_s_in1k_448.py``)::

    model = dict(type='EMADistillClassifier', alpha=0.5, data_preprocessor=dict(
        type='EMADistillDataPreprocessor', num_classes=1000,
        batch_augments=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)])), ...)
    custom_hooks = [dict(type='EMAHook', momentum=1e-4, update_buffers=True, priority='ABOVE_NORMAL'),
                    dict(type='EMADistillHook')]
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.models.necks import GlobalAveragePooling
from torch import Tensor, nn

# the other two pieces, importable from here as before
from mmrevcol.engine.ema_distill import EMADistillHook  # noqa: F401
from .ema_distill_preprocessor import EMADistillDataPreprocessor, mix_with_mask  # noqa: F401

__all__ = ['EMADistillClassifier', 'EMADistillDataPreprocessor', 'EMADistillHook', 'class_probability_maps',
           'mix_with_mask', 'mixed_teacher_target']


# ---------------------------------------------------------------------------------------------------------------
# the teacher's target
def class_probability_maps(classifier: ImageClassifier, inputs: Tensor) -> Tensor:
    """``(N, K, h, w)`` class probabilities of ``classifier`` at every location of its last feature map: the
    final average pooling is skipped and the head classifies each location's feature vector."""
    feat = classifier.backbone(inputs)
    feat = feat[-1] if isinstance(feat, (tuple, list)) else feat
    if feat.dim() != 4:
        raise ValueError(f'EMA distillation needs a spatial (N, C, h, w) last feature map, got {tuple(feat.shape)}')
    if classifier.with_neck and not isinstance(classifier.neck, GlobalAveragePooling):
        raise TypeError('EMA distillation drops the final pooling: the neck must be GlobalAveragePooling or None, '
                        f'got {type(classifier.neck).__name__}')
    n, c, h, w = feat.shape
    logits = classifier.head((feat.permute(0, 2, 3, 1).reshape(n * h * w, c), ))
    return logits.softmax(-1).reshape(n, h, w, -1).permute(0, 3, 1, 2)


def mixed_teacher_target(prob_maps: Tensor, index: Tensor, mask: Tensor) -> Tensor:
    """``AvgPool(M * P_a + (1 - M) * P_b)`` with ``P_a = prob_maps``, ``P_b = prob_maps[index]``.

    Args:
        prob_maps: ``(N, K, h, w)`` teacher probabilities of the unmixed images.
        index: ``(N,)`` partner of each sample.
        mask: ``(N or 1, 1, H, W)`` weight of each sample's own pixels at image resolution; brought to ``(h, w)`` by
            area averaging (the fraction of each feature cell that comes from the sample itself).
    """
    m = F.adaptive_avg_pool2d(mask.to(prob_maps.dtype), prob_maps.shape[-2:])
    return (m * prob_maps + (1 - m) * prob_maps[index]).mean(dim=(2, 3))


@MODELS.register_module()
class EMADistillClassifier(ImageClassifier):
    """``ImageClassifier`` trained on ``alpha * (mixed label) + (1 - alpha) * (EMA teacher's mixed target)``.

    The teacher is attached by :class:`EMADistillHook` (or :meth:`set_teacher`); without a teacher, or for batches
    the preprocessor did not mix, the loss is the plain one. The head's loss must accept soft targets (e.g.
    ``CrossEntropyLoss(use_soft=True)`` or ``LabelSmoothLoss(mode='original')``).

    Args:
        alpha (float): Weight of the mixed label (the paper's trade-off ``alpha``). Defaults to 0.5.
        **kwargs: Arguments of ``ImageClassifier``.
    """

    def __init__(self, *args, alpha: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0 <= alpha <= 1:
            raise ValueError(f'alpha must be in [0, 1], got {alpha}')
        self.alpha = alpha
        self._teacher: List[nn.Module] = []  # a list keeps the teacher out of this module's parameters/state dict

    @property
    def teacher(self) -> Optional[nn.Module]:
        return self._teacher[0] if self._teacher else None

    def set_teacher(self, teacher: Optional[nn.Module]) -> None:
        self._teacher[:] = [teacher] if teacher is not None else []

    @torch.no_grad()
    def teacher_target(self, data_samples) -> Tensor:
        """The mixed teacher target ``y^`` of a batch the preprocessor mixed."""
        teacher = self.teacher
        sources = torch.stack([s.mix_source for s in data_samples])
        index = torch.stack([s.mix_index for s in data_samples]).long()
        mask = torch.stack([s.mix_mask for s in data_samples])
        was_training = teacher.training
        teacher.eval()  # BN running statistics (EMA'd with update_buffers=True), no dropout / drop-path
        try:
            maps = class_probability_maps(teacher, sources)
        finally:
            teacher.train(was_training)
        return mixed_teacher_target(maps, index, mask)

    def distill_targets(self, data_samples) -> None:
        """Replace each sample's ``gt_score`` (the mixed label) by ``alpha * gt_score + (1 - alpha) * y^``."""
        if self.teacher is None or not data_samples or 'mix_source' not in data_samples[0]:
            return
        target = self.teacher_target(data_samples)
        for sample, t in zip(data_samples, target):
            sample.set_gt_score(self.alpha * sample.gt_score + (1 - self.alpha) * t.to(sample.gt_score.dtype))

    def loss(self, inputs: Tensor, data_samples) -> dict:
        self.distill_targets(data_samples)
        return super().loss(inputs, data_samples)
