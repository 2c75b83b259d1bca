"""Parameter memory layouts that match their gradients (DDP copies every gradient that does not).

Where a conv's input is channels-last (RevCol's columns, after :class:`~mmrevcol.models.layers.LayerNorm2d`), autograd
produces its weight gradient channels-last too. A weight stored in the default layout then costs a copy per step:
autograd's ``AccumulateGrad`` copies a dense gradient into the weight's strides, and for weights whose strides differ
only on a size-1 dim (depthwise ``(C, 1, k, k)``: ``(9, 1, 3, 1)`` vs ``(9, 9, 3, 1)``, the same bytes) autograd
keeps the gradient as it is and DDP's reducer copies it into its bucket instead, warning ``Grad strides do not match
bucket view strides``. Storing those weights channels-last from construction removes both copies; loading a
checkpoint (``copy_``), ``.to()`` and optimizer states keep the layout.
"""
import torch
from torch import nn

__all__ = ['channels_last_conv_weights_']


def channels_last_conv_weights_(module: nn.Module) -> int:
    """Store the weight of every ``nn.Conv2d`` in ``module`` channels-last (values unchanged); returns how many.

    Call it at construction, on the part of a model whose convs see channels-last inputs, before an optimizer or
    DDP holds the parameters.
    """
    count = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.weight.dim() == 4:
            # clone, not .contiguous(): a (C, 1, k, k) weight counts as channels-last already (size-1 dims are
            # ignored), but its strides are not the ones autograd gives its gradient
            m.weight.data = m.weight.data.clone(memory_format=torch.channels_last)
            count += 1
    return count
