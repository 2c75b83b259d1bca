"""Linear centered kernel alignment (CKA) between representations, in float64.

``CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with the linear kernels ``K = X X^T``, ``L = Y Y^T`` of
``n`` examples (rows; any trailing dims are flattened, as the official RevCol ``tools/visual.py`` does). Two
estimators of HSIC:

- biased (Kornblith et al. 2019): ``tr(K H L H)`` with the centring matrix ``H``;
- unbiased (Song et al. 2012, the official RevCol code): the U-statistic, free of the ``O(1/n)`` bias that makes
  the biased CKA of two *independent* high-dimensional representations far from 0 at small ``n``. CKA from it is
  the "debiased" CKA (Nguyen et al. 2021). It needs ``n >= 4`` examples.

The functions take torch tensors and compute in float64 whatever the input dtype: the Gram matrices sum
``h * w * c`` products per entry, and the unbiased estimator subtracts terms of similar size.
"""
from typing import Optional

import torch
from torch import Tensor

__all__ = ['gram_linear', 'center_gram', 'hsic', 'cka', 'cka_from_grams']

MIN_UNBIASED = 4


def _flat(x: Tensor) -> Tensor:
    if x.dim() < 1 or x.shape[0] < 2:
        raise ValueError(f'a representation needs examples along dim 0 (at least 2), got shape {tuple(x.shape)}')
    return x.reshape(x.shape[0], -1)


def gram_linear(x: Tensor, chunk_elements: int = 1 << 24) -> Tensor:
    """``X X^T`` in float64 for ``x`` of shape ``(n, ...)`` (flattened to ``(n, d)``).

    The float64 copy is made ``chunk_elements`` entries at a time, so a wide float32 feature map (e.g. 64 x 56 x 56
    per example) does not get a float64 twin in memory.

    Args:
        x (Tensor): ``n`` examples.
        chunk_elements (int): Largest float64 block converted at once.

    Returns:
        Tensor: ``(n, n)`` float64 Gram matrix.
    """
    x = _flat(x)
    n, d = x.shape
    step = max(1, chunk_elements // n)
    gram = torch.zeros(n, n, dtype=torch.float64, device=x.device)
    for start in range(0, d, step):
        block = x[:, start:start + step].to(torch.float64)
        gram += block @ block.T
    return gram


def center_gram(gram: Tensor, unbiased: bool = False) -> Tensor:
    """Centre a symmetric Gram matrix so that ``<center(K), center(L)>`` is the (scaled) HSIC.

    Biased: ``H K H``. Unbiased: zero diagonal and the U-statistic's centring, after which the Frobenius inner
    product equals ``n (n - 3)`` times the unbiased HSIC of Song et al. (Kornblith et al.'s ``center_gram``).
    """
    gram = gram.to(torch.float64).clone()
    n = gram.shape[0]
    if unbiased:
        if n < MIN_UNBIASED:
            raise ValueError(f'unbiased HSIC needs at least {MIN_UNBIASED} examples, got {n}')
        gram.fill_diagonal_(0)
        means = gram.sum(0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        gram.fill_diagonal_(0)
    else:
        means = gram.mean(0)
        means = means - means.mean() / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def hsic(k: Tensor, l: Tensor, unbiased: bool = True) -> Tensor:  # noqa: E741
    """HSIC of two Gram matrices, by its textbook formulas (the reference :func:`cka_from_grams` is checked against).

    Unbiased (Song et al. 2012, eq. 5; the official RevCol ``unbiased_HSIC``)::

        1 / (n (n - 3)) * [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n - 1)(n - 2)) - 2 / (n - 2) 1^T K~ L~ 1]

    with ``K~``, ``L~`` the Gram matrices with a zero diagonal. Biased: ``tr(K H L H) / (n - 1)^2``.
    """
    k, l = k.to(torch.float64), l.to(torch.float64)  # noqa: E741
    n = k.shape[0]
    if not unbiased:
        h = torch.eye(n, dtype=torch.float64, device=k.device) - 1.0 / n
        return torch.trace(k @ h @ l @ h) / (n - 1) ** 2
    if n < MIN_UNBIASED:
        raise ValueError(f'unbiased HSIC needs at least {MIN_UNBIASED} examples, got {n}')
    k, l = k.clone().fill_diagonal_(0), l.clone().fill_diagonal_(0)  # noqa: E741
    ones = torch.ones(n, dtype=torch.float64, device=k.device)
    trace = torch.trace(k @ l)
    middle = (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
    last = 2.0 / (n - 2) * (ones @ k @ (l @ ones))
    return (trace + middle - last) / (n * (n - 3))


def cka_from_grams(gram_x: Tensor, gram_y: Tensor, debiased: bool = True) -> float:
    """Linear CKA from two ``(n, n)`` Gram matrices (see :func:`cka`)."""
    if gram_x.shape != gram_y.shape or gram_x.dim() != 2 or gram_x.shape[0] != gram_x.shape[1]:
        raise ValueError(f'Gram matrices must both be (n, n), got {tuple(gram_x.shape)} and {tuple(gram_y.shape)}')
    kx, ky = center_gram(gram_x, debiased), center_gram(gram_y, debiased)
    denominator = torch.linalg.norm(kx) * torch.linalg.norm(ky)
    if denominator <= 0:  # a constant representation carries no information: no similarity to measure
        return float('nan')
    return float((kx * ky).sum() / denominator)


def cka(x: Tensor, y: Tensor, debiased: bool = True, gram_y: Optional[Tensor] = None) -> float:
    """Linear CKA between ``x`` and ``y``, each ``(n, ...)`` with the same ``n`` examples in the same order.

    1 for representations equal up to an orthogonal transform and an isotropic scaling; the debiased estimate is
    about 0 for independent ones (the biased one is not, at small ``n``). Debiased values can be slightly negative.

    Args:
        x (Tensor): First representation, examples along dim 0.
        y (Tensor): Second representation, examples along dim 0.
        debiased (bool): Unbiased HSIC (official RevCol, needs ``n >= 4``) or the biased one. Defaults to True.
        gram_y (Tensor, optional): ``gram_linear(y)`` when it is reused across many ``x``.

    Returns:
        float: The CKA, NaN when either representation is constant across examples.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f'x and y must hold the same examples, got {x.shape[0]} and {y.shape[0]}')
    return cka_from_grams(gram_linear(x), gram_linear(y) if gram_y is None else gram_y, debiased)
