"""Normalisation bricks shared by the backbones."""
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an ``(N, C, H, W)`` map; the result keeps channels-last memory.

    Unlike mmpretrain's ``LayerNorm2d`` it does not copy the result back to NCHW memory: a stream of convs and
    channel-wise layers then stays channels-last, where depthwise convs are faster and a ConvNeXt block's
    ``permute`` to (N, H, W, C) costs nothing. Same parameters (``weight``, ``bias``) and the same function as
    mmpretrain's, so checkpoints load unchanged. A consumer that reads raw NCHW memory calls ``.contiguous()``.
    """

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
