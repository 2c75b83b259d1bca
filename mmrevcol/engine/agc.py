"""Adaptive Gradient Clipping (Brock et al., NFNet, ICML 2021, https://arxiv.org/abs/2102.06171, Sec. 4).

Unit-wise: each row ``i`` of a weight (an output unit: a conv filter, a linear output) has its gradient rescaled so
that ``||G_i|| / max(||W_i||, eps) <= clip``; 1-D parameters (biases, gains) are one unit. The paper does not clip
the final linear classifier, so parameters whose name matches an ``exclude`` pattern are left alone.

AGC transforms gradients once per step, so it lives in mmengine's optimizer-wrapper path, for any model::

    optim_wrapper = dict(type='AGCOptimWrapper', clip=0.01, exclude=(r'(^|\\.)head\\.fc\\.', ),
                         optimizer=dict(type='SGD', lr=0.1, momentum=0.9, nesterov=True))
    # AMP: type='AGCAmpOptimWrapper' (gradients are unscaled before clipping, as AmpOptimWrapper's own clip)

Parameter names come from the model the training loop passes to ``initialize_count_status`` (mmengine's loops do
so before the first step); a custom loop calls ``optim_wrapper.bind_model(model)`` instead. An ordinary
``clip_grad=dict(...)`` may be given as well: it runs after AGC.
"""
import re
from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import Tensor, nn

# The final linear classifier of mmpretrain's LinearClsHead and of timm models (NFNet's ``head.fc``).
DEFAULT_EXCLUDE = (r'(^|\.)head\.fc\.', )


def unitwise_norm(x: Tensor, norm_type: float = 2.0) -> Tensor:
    """Norm of each output unit (dim 0 row) of ``x``, broadcastable to ``x``; 1-D / 0-D tensors are one unit."""
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x, norm_type)
    return torch.linalg.vector_norm(x, norm_type, dim=tuple(range(1, x.ndim)), keepdim=True)


@torch.no_grad()
def adaptive_clip_grad_(parameters: Union[Tensor, Iterable[Tensor]], clip: float = 0.01, eps: float = 1e-3,
                        norm_type: float = 2.0) -> int:
    """Clip the gradients of ``parameters`` in place, unit-wise. Returns how many parameters had a unit clipped.

    ``g_i <- g_i * clip * max(||w_i||, eps) / ||g_i||`` where ``||g_i|| > clip * max(||w_i||, eps)``.
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    clipped = 0
    for p in parameters:
        if p.grad is None:
            continue
        grad = p.grad.detach()
        max_norm = unitwise_norm(p.detach(), norm_type).clamp(min=eps).mul_(clip)
        grad_norm = unitwise_norm(grad, norm_type)
        over = grad_norm > max_norm
        if bool(over.any()):
            clipped += 1
            # the 1e-6 floor only guards the division; where it would matter the gradient is not clipped
            scale = torch.where(over, max_norm / grad_norm.clamp(min=1e-6), torch.ones_like(grad_norm))
            grad.mul_(scale.to(grad.dtype))
    return clipped


class AGCMixin:
    """Unit-wise AGC in ``OptimWrapper._clip_grad`` (so AmpOptimWrapper unscales before it)."""

    def _init_agc(self, clip: float, eps: float, exclude: Optional[Sequence[str]], norm_type: float) -> None:
        if clip <= 0:
            raise ValueError(f'AGC clip must be > 0, got {clip}')
        self.agc_clip = float(clip)
        self.agc_eps = float(eps)
        self.agc_norm_type = float(norm_type)
        self.agc_exclude = tuple(DEFAULT_EXCLUDE if exclude is None else exclude)
        self._agc_patterns = [re.compile(p) for p in self.agc_exclude]
        self._agc_excluded_ids: Optional[set] = None if self._agc_patterns else set()
        self.agc_excluded_names: List[str] = []

    def bind_model(self, model: nn.Module) -> List[str]:
        """Resolve ``exclude`` against ``model``'s parameter names; returns the excluded names.

        Model wrappers (DDP, ...) are unwrapped first, so the patterns see ``backbone.``, not ``module.backbone.``.
        """
        while is_model_wrapper(model) or isinstance(getattr(model, 'module', None), nn.Module):
            model = model.module
        names = [n for n, p in model.named_parameters() if any(r.search(n) for r in self._agc_patterns)]
        params = dict(model.named_parameters())
        self._agc_excluded_ids = {id(params[n]) for n in names}
        self.agc_excluded_names = names
        return names

    def initialize_count_status(self, model: nn.Module, init_counts: int, max_counts: int) -> None:
        # mmengine's train loops call this with the (wrapped) model before the first step
        self.bind_model(model)
        super().initialize_count_status(model, init_counts, max_counts)

    def agc_params(self) -> List[Tensor]:
        if self._agc_excluded_ids is None:
            raise RuntimeError(f'{type(self).__name__}: exclude patterns {self.agc_exclude} need parameter names; '
                               'call optim_wrapper.bind_model(model) before the first step (mmengine loops do)')
        return [p for g in self.optimizer.param_groups for p in g['params']
                if p.grad is not None and id(p) not in self._agc_excluded_ids]

    def _clip_grad(self) -> None:
        n = adaptive_clip_grad_(self.agc_params(), self.agc_clip, self.agc_eps, self.agc_norm_type)
        self.message_hub.update_scalar('train/agc_clipped_params', n)
        if self._plain_clip:
            super()._clip_grad()


@OPTIM_WRAPPERS.register_module()
class AGCOptimWrapper(AGCMixin, OptimWrapper):
    """OptimWrapper with Adaptive Gradient Clipping before every optimizer step.

    Args:
        optimizer (Optimizer): The optimizer (built by the constructor from ``optimizer=dict(...)``).
        clip (float): λ, the largest allowed unit-wise ``||G|| / ||W||``; the paper uses 0.01-0.16 (smaller for
            larger batches). Defaults to 0.01.
        eps (float): Floor of ``||W||`` so zero-initialised units can still move. Defaults to 1e-3.
        exclude (Sequence[str], optional): Regular expressions searched in parameter names; matches are not
            clipped. None: the final classifier ``head.fc``. ``()``: clip everything. Defaults to None.
        norm_type (float): Norm of the units. Defaults to 2.
        clip_grad (dict, optional): An ordinary mmengine gradient clip applied after AGC.
        **kwargs: Other :class:`mmengine.optim.OptimWrapper` arguments (``accumulative_counts``, ...).
    """

    def __init__(self, optimizer, clip: float = 0.01, eps: float = 1e-3, exclude: Optional[Sequence[str]] = None,
                 norm_type: float = 2.0, clip_grad: Optional[Dict] = None, **kwargs):
        super().__init__(optimizer, clip_grad=clip_grad, **kwargs)
        self._plain_clip = clip_grad is not None
        # OptimWrapper/AmpOptimWrapper.step clip only when clip_grad_kwargs is non-empty
        self.clip_grad_kwargs = self.clip_grad_kwargs or {'agc': True}
        self._init_agc(clip, eps, exclude, norm_type)


@OPTIM_WRAPPERS.register_module()
class AGCAmpOptimWrapper(AGCMixin, AmpOptimWrapper):
    """AmpOptimWrapper with Adaptive Gradient Clipping on the unscaled gradients. Arguments as
    :class:`AGCOptimWrapper` plus :class:`mmengine.optim.AmpOptimWrapper`'s (``loss_scale``, ``dtype``)."""

    def __init__(self, optimizer, clip: float = 0.01, eps: float = 1e-3, exclude: Optional[Sequence[str]] = None,
                 norm_type: float = 2.0, clip_grad: Optional[Dict] = None, **kwargs):
        super().__init__(optimizer=optimizer, clip_grad=clip_grad, **kwargs)
        self._plain_clip = clip_grad is not None
        self.clip_grad_kwargs = self.clip_grad_kwargs or {'agc': True}
        self._init_agc(clip, eps, exclude, norm_type)
