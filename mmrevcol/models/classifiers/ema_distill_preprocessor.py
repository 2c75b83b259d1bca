"""The data preprocessor of EMA distillation (:mod:`mmrevcol.models.classifiers.ema_distill`): mmpretrain's Mixup /
CutMix, sampled exactly as mmpretrain samples them, with what the EMA teacher needs kept per sample (the unmixed
image, the partner's index, the mask of the sample's own pixels)."""
from typing import Optional, Tuple

import numpy as np
import torch
from mmengine.registry import MODELS
from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.models.utils.batch_augments import CutMix, Mixup
from torch import Tensor

__all__ = ['EMADistillDataPreprocessor', 'mix_with_mask']


def mix_with_mask(augment: Optional[Mixup], inputs: Tensor,
                  scores: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Mixup / CutMix as mmpretrain samples them, also returning where each pixel came from.

    Args:
        augment: An mmpretrain ``Mixup`` or ``CutMix`` (None: no mixing).
        inputs: ``(N, C, H, W)`` images.
        scores: ``(N, K)`` one-hot (or soft) labels.

    Returns:
        ``(mixed inputs, mixed scores, index, mask)``: sample ``i`` is ``mask * inputs[i] + (1 - mask) *
        inputs[index[i]]``, its score ``lam * scores[i] + (1 - lam) * scores[index[i]]``; ``mask`` is ``(1, 1, H, W)``
        (CutMix: 0 in the pasted box; Mixup: ``lam`` everywhere).
    """
    n, _, h, w = inputs.shape
    if augment is None:
        return inputs, scores.float(), torch.arange(n), inputs.new_ones(1, 1, h, w)
    if not isinstance(augment, Mixup):
        raise TypeError(f'EMA distillation mixes with Mixup or CutMix, got {type(augment).__name__}')
    # the same random calls in the same order as mmpretrain's Mixup.mix / CutMix.mix
    lam = np.random.beta(augment.alpha, augment.alpha)
    index = torch.randperm(n)
    if isinstance(augment, CutMix):
        (y1, y2, x1, x2), lam = augment.cutmix_bbox_and_lam((h, w), lam)
        mask = inputs.new_ones(1, 1, h, w)
        mask[..., y1:y2, x1:x2] = 0
    else:
        mask = inputs.new_full((1, 1, h, w), float(lam))
    mixed = mask * inputs + (1 - mask) * inputs[index]
    return mixed, lam * scores + (1 - lam) * scores[index], index, mask


@MODELS.register_module()
class EMADistillDataPreprocessor(ClsDataPreprocessor):
    """``ClsDataPreprocessor`` that keeps what the EMA teacher needs from the batch augmentation.

    In training, with ``batch_augments`` (Mixup and/or CutMix, chosen as ``RandomBatchAugment`` chooses), each data
    sample gets ``mix_source`` (its unmixed image), ``mix_index`` (the batch index of its partner) and ``mix_mask``
    (``(1, H, W)``, the weight of its own pixels). Arguments: those of ``ClsDataPreprocessor``.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        augments = self.batch_augments
        record = []
        if training and augments is not None:
            def recording_mix(inputs, scores):
                aug = augments.augments[np.random.choice(len(augments.augments), p=augments.probs)]
                mixed, mixed_scores, index, mask = mix_with_mask(aug, inputs, scores)
                record.append((inputs, index, mask))
                return mixed, mixed_scores

            self.batch_augments = recording_mix
        try:
            data = super().forward(data, training)
        finally:
            self.batch_augments = augments
        if record:
            inputs, index, mask = record[0]
            for i, sample in enumerate(data['data_samples']):
                sample.set_field(inputs[i], 'mix_source', field_type='data')
                sample.set_field(index[i].to(inputs.device), 'mix_index', field_type='data')
                sample.set_field(mask[0], 'mix_mask', field_type='data')
        return data
