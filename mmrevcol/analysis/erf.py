"""Effective receptive field (ERF), as RepLKNet and SLaK draw it.

For each image, the gradient of the centre pixel of an output map (summed over channels after a ReLU, as
RepLKNet's ``visualize_erf.py``) with respect to the input; its absolute value, summed over the input channels and
the images, is the *contribution* map: how much each input pixel moves the centre of the feature map.

Two ways to read it:

- :func:`erf_heatmap`: the picture. ``log10`` of the contribution relative to its maximum (floored, so exact zeros
  stay finite), then min-max to ``[0, 1]``: scale-free, so backbones whose gradients differ in magnitude compare.
- :func:`high_contribution_area`: RepLKNet's numbers. The smallest square centred on the image centre holding a
  fraction ``t`` of the total contribution (t = 20/30/50/99 %), as its side and its share of the image area. A
  larger ratio at a given ``t``: contribution spread farther from the centre, i.e. a larger effective receptive
  field. Computed on the raw contribution by default (scale-free); ``log_scale=True`` applies RepLKNet's exact
  transform first (``log10(x + 1)``, which depends on the gradients' magnitude).
"""
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .features import as_outputs

__all__ = ['THRESHOLDS', 'select_output', 'contribution_map', 'erf_heatmap', 'high_contribution_area']

THRESHOLDS = (0.2, 0.3, 0.5, 0.99)


def select_output(outs, input_hw: Tuple[int, int], stage: int = -1, stride: Optional[int] = None) -> Tuple[int, Tensor]:
    """The output map the ERF is taken of: index ``stage`` of the backbone's outputs, or (``stride`` given) the
    output whose stride (input size / map size) is ``stride``, which compares backbones whose stage indices differ.

    Returns:
        Tuple[int, Tensor]: (index in the outputs, the ``(N, C, H, W)`` map).
    """
    outs = as_outputs(outs)
    maps = [(i, o) for i, o in enumerate(outs) if o.dim() == 4]
    if stride is not None:
        strides = {i: round(input_hw[0] / o.shape[-2]) for i, o in maps}
        chosen = [i for i, s in strides.items() if s == stride]
        if not chosen:
            raise ValueError(f'no output at stride {stride}; the outputs have strides {list(strides.values())} '
                             '(set out_indices with --cfg-options model.backbone.out_indices=...)')
        return chosen[0], outs[chosen[0]]
    if not -len(outs) <= stage < len(outs):
        raise ValueError(f'stage {stage} out of range: the backbone returns {len(outs)} outputs')
    index = stage % len(outs)
    if outs[index].dim() != 4:
        raise ValueError(f'output {index} is not a feature map (shape {tuple(outs[index].shape)})')
    return index, outs[index]


def contribution_map(model: Callable[[Tensor], Union[Tensor, Sequence[Tensor]]], images: Tensor, stage: int = -1,
                     stride: Optional[int] = None, batch_size: int = 4) -> Tuple[Tensor, int, Tuple[int, int]]:
    """Summed ``|d centre / d input|`` over ``images`` (``(n, C, H, W)``): an ``(H, W)`` float64 map.

    ``centre = sum_c ReLU(out[:, c, h // 2, w // 2])`` of the selected output (:func:`select_output`). Images are
    independent in eval mode, so a batch's summed centre gives each image its own gradient. Parameters keep their
    ``requires_grad``; only the input's gradient is computed.

    Returns:
        Tuple[Tensor, int, Tuple[int, int]]: (the contribution map, index of the output it was taken of, that
        output's size).
    """
    if images.dim() != 4:
        raise ValueError(f'images must be (n, C, H, W), got {tuple(images.shape)}')
    device = images.device
    acc = torch.zeros(images.shape[-2:], dtype=torch.float64, device=device)
    index, map_hw = -1, (0, 0)
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            index, out = select_output(model(x), tuple(x.shape[-2:]), stage, stride)
            map_hw = tuple(out.shape[-2:])
            centre = F.relu(out[:, :, out.shape[-2] // 2, out.shape[-1] // 2]).sum()
            if not centre.requires_grad:  # e.g. every channel of the centre is negative for a bias-free net
                continue
            grad, = torch.autograd.grad(centre, x)
        acc += grad.abs().sum(dim=(0, 1)).to(torch.float64)
    return acc.cpu(), index, map_hw


def erf_heatmap(contribution: Tensor, floor: float = 1e-6) -> Tensor:
    """The contribution map for display: ``log10(contribution / max)`` floored at ``log10(floor)``, min-max to
    ``[0, 1]``. All zeros (no gradient reached the input) gives all zeros."""
    c = contribution.to(torch.float64)
    peak = c.max()
    if peak <= 0:
        return torch.zeros_like(c)
    log = torch.log10((c / peak).clamp(min=floor))
    span = log.max() - log.min()
    return (log - log.min()) / span if span > 0 else torch.ones_like(log)


def high_contribution_area(contribution: Tensor, thresholds: Sequence[float] = THRESHOLDS,
                           log_scale: bool = False) -> Dict[float, Tuple[int, float]]:
    """RepLKNet's high-contribution area: for each ``t``, the smallest square centred on ``(H // 2, W // 2)``
    whose sum is at least ``t`` of the total (squares clipped at the border).

    Args:
        contribution (Tensor): ``(H, W)`` non-negative map (:func:`contribution_map`).
        thresholds (Sequence[float]): Fractions in (0, 1].
        log_scale (bool): First ``log10(x + 1)`` and divide by the max, as RepLKNet's ``analyze_erf.py``.

    Returns:
        Dict[float, Tuple[int, float]]: ``t -> (side of the square, its area / (H * W))``; ``(0, nan)`` for an
        all-zero map.
    """
    data = contribution.to(torch.float64).cpu()
    if (data < 0).any():
        raise ValueError('a contribution map is non-negative')
    if log_scale:
        data = torch.log10(data + 1)
        data = data / data.max() if data.max() > 0 else data
    h, w = data.shape
    total = float(data.sum())
    if total <= 0:
        return {t: (0, float('nan')) for t in thresholds}
    integral = F.pad(data.cumsum(0).cumsum(1), (1, 0, 1, 0))
    cy, cx = h // 2, w // 2
    sums, areas = [], []
    for r in range(max(h, w)):
        y0, y1, x0, x1 = max(cy - r, 0), min(cy + r + 1, h), max(cx - r, 0), min(cx + r + 1, w)
        sums.append(float(integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]))
        areas.append((y1 - y0) * (x1 - x0) / (h * w))
    result = {}
    for t in thresholds:
        if not 0 < t <= 1:
            raise ValueError(f'thresholds are fractions in (0, 1], got {t}')
        r = next(r for r, s in enumerate(sums) if s >= t * total * (1 - 1e-12))
        result[t] = (2 * r + 1, areas[r])
    return result
