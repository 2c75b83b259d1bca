"""Large depthwise convolutions (SLaK): the hot spot of the network, in one place.

* :func:`depthwise_conv2d` computes a "same"-size depthwise cross-correlation for any (odd) kernel shape with a
  selectable implementation: ``'conv'`` (``F.conv2d`` with padding ``(kh // 2, kw // 2)``: what the official CUDA
  extension computes, on any device and dtype), ``'fft'`` (zero-padded real FFT: its cost does not grow with the
  kernel area) or ``'triton'`` (:mod:`~mmrevcol.models.layers.triton_dwconv`: the branches' taps in one pass over
  the input; CUDA, or Triton's interpreter on CPU for tests). ``'auto'`` picks one per device, dtype and kernel
  size from measured rules (:func:`choose_impl`, :data:`AUTO_RULES`).
* :class:`LargeKernelConv` is SLaK's ``ReparamLargeKernelConv``: ``BN(K×s) + BN(s×K) + BN(s×s)`` (decomposed) or
  ``BN(K×K) + BN(s×s)``, all depthwise without bias; :meth:`LargeKernelConv.switch_to_deploy` folds the BNs and
  merges the kernels into one K×K depthwise conv with bias (the same function in eval mode).

The branches share the input, so the FFT path transforms it once and only the (small) kernels per branch, and the
Triton path loads each input tile once for all branches.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

IMPLS = ('auto', 'conv', 'fft', 'triton')

# CPU: below this kernel area (kh * kw) the direct depthwise conv is faster than the FFT path (measured on a
# 2-core x86 machine with SLaK-T's shapes; see tools/analysis/benchmark_slak.py to re-measure on yours).
CPU_FFT_MIN_AREA = 1024
# CUDA: cuDNN's depthwise kernels degrade with the kernel area too, later.
CUDA_FFT_MIN_AREA = 2048


class AutoRule(NamedTuple):
    """One measured choice of ``impl='auto'``: on ``device``, for ``dtypes`` (empty: any), when the largest kernel
    area is at least ``min_area``, use ``impl``. ``source`` says which measurement the rule comes from."""
    device: str
    impl: str
    min_area: int = 0
    dtypes: Tuple[torch.dtype, ...] = ()
    source: str = ''


# First matching rule wins; nothing matches -> 'conv' (F.conv2d). A rule for 'triton' is skipped where its kernels
# cannot run (no Triton). Add one only from a GPU measurement (tools/analysis/benchmark_gpu.py; the table in
# docs/slak.md) and name it in ``source``: no GPU has measured the Triton kernels yet, so 'auto' never picks them
# (select them with impl='triton', or model.backbone.impl='triton' in a config).
AUTO_RULES: Tuple[AutoRule, ...] = (
    AutoRule('cpu', 'fft', CPU_FFT_MIN_AREA, source='2-core x86, tools/analysis/benchmark_slak.py'),
    AutoRule('cuda', 'fft', CUDA_FFT_MIN_AREA, source='earlier default (H100: decomposed kernels faster with conv)'),
)


def choose_impl(device: torch.device, kernel_sizes: Sequence[Tuple[int, int]],
                dtype: Optional[torch.dtype] = None) -> str:
    """The implementation ``'auto'`` uses for these kernels on ``device`` (in ``dtype``, if given).

    Direct convolution costs ``kh * kw`` multiply-adds per output, the FFT path ``O(log(HW))``: the FFT wins once
    the largest kernel's area passes a device-dependent threshold (the decomposed SLaK kernels, K×5, stay below it;
    the merged deploy-time K×K kernels of the first stages are above it). The rules are :data:`AUTO_RULES`.
    """
    area = max(kh * kw for kh, kw in kernel_sizes)
    for rule in AUTO_RULES:
        if rule.device != device.type or area < rule.min_area:
            continue
        if rule.dtypes and dtype not in rule.dtypes:
            continue
        if rule.impl == 'triton':
            from . import triton_dwconv
            if not triton_dwconv.available(device):
                continue
        return rule.impl
    return 'conv'


def _compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype a conv of ``x`` computes in: the autocast dtype where autocast is on."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _conv(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    kh, kw = weight.shape[-2:]
    return F.conv2d(x, weight, bias, padding=(kh // 2, kw // 2), groups=x.shape[1])


def fast_fft_size(n: int) -> int:
    """The smallest 5-smooth integer >= n (2^a 3^b 5^c): FFT sizes with large prime factors are several times
    slower, and any size >= the linear-correlation size gives the same result."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _fft_multi(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Optional[Tensor]]) -> List[Tensor]:
    """Depthwise "same" cross-correlations of ``x`` with each weight, through one shared FFT of ``x``.

    Linear (not circular) correlation: the transform is at least ``H + kh_max - 1`` by ``W + kw_max - 1``, rounded
    up to 5-smooth sizes (:func:`fast_fft_size`). Computed in float32 at least (torch's FFT has no bf16, and fp16
    only for power-of-two sizes); the result has ``x``'s dtype.
    """
    n, c, h, w = x.shape
    kh_max = max(wt.shape[-2] for wt in weights)
    kw_max = max(wt.shape[-1] for wt in weights)
    fh, fw = fast_fft_size(h + kh_max - 1), fast_fft_size(w + kw_max - 1)
    compute = torch.promote_types(x.dtype, torch.float32)
    spec_x = torch.fft.rfft2(x.to(compute), s=(fh, fw))
    outs = []
    for weight, bias in zip(weights, biases):
        kh, kw = weight.shape[-2:]
        # correlation = convolution with the flipped kernel; output (i, j) sits at (i + kh-1-kh//2, ...) of the
        # full convolution
        k = torch.flip(weight.to(compute).reshape(c, kh, kw), dims=(-2, -1))
        full = torch.fft.irfft2(spec_x * torch.fft.rfft2(k, s=(fh, fw)), s=(fh, fw))
        top, left = kh - 1 - kh // 2, kw - 1 - kw // 2
        out = full[..., top:top + h, left:left + w]
        if bias is not None:
            out = out + bias.to(compute).view(1, c, 1, 1)
        outs.append(out.to(x.dtype).contiguous())
    return outs


def depthwise_conv2d_multi(x: Tensor, weights: Sequence[Tensor], biases: Optional[Sequence[Optional[Tensor]]] = None,
                           impl: str = 'auto') -> List[Tensor]:
    """``[depthwise_conv2d(x, w, b) for w, b in zip(weights, biases)]``, sharing work between the kernels.

    Args:
        x (Tensor): (N, C, H, W) input.
        weights (Sequence[Tensor]): (C, 1, kh, kw) depthwise kernels, odd kh and kw.
        biases (Sequence[Tensor | None], optional): (C,) biases. Defaults to no bias.
        impl (str): 'auto', 'conv', 'fft' or 'triton'. Defaults to 'auto'.

    Returns:
        List[Tensor]: (N, C, H, W) outputs: NCHW-contiguous with 'fft'; in ``x``'s memory layout with 'conv' and
        'triton'.
    """
    biases = list(biases) if biases is not None else [None] * len(weights)
    for weight in weights:
        kh, kw = weight.shape[-2:]
        if weight.shape[0] != x.shape[1] or weight.shape[1] != 1 or kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f'depthwise kernels must be ({x.shape[1]}, 1, odd, odd), got {tuple(weight.shape)}')
    if impl == 'auto':
        impl = choose_impl(x.device, [tuple(w.shape[-2:]) for w in weights], _compute_dtype(x))
    if impl == 'conv':
        return [_conv(x, w, b) for w, b in zip(weights, biases)]
    if impl == 'fft':
        return _fft_multi(x, weights, biases)
    if impl == 'triton':
        from .triton_dwconv import depthwise_conv2d_triton
        out: List[Tensor] = []
        for start in range(0, len(weights), 3):  # up to three kernels per pass
            out += depthwise_conv2d_triton(x, weights[start:start + 3], biases[start:start + 3])
        return out
    raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')


def depthwise_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, impl: str = 'auto') -> Tensor:
    """Depthwise cross-correlation with "same" output size, padding ``(kh // 2, kw // 2)`` (odd kernels)."""
    return depthwise_conv2d_multi(x, [weight], [bias], impl)[0]


# ----------------------------------------------------------------------------------------------------------------
class ConvBN(nn.Module):
    """A depthwise conv without bias followed by a BatchNorm (official ``conv_bn``: keys ``conv.*``, ``bn.*``)."""

    def __init__(self, channels: int, kernel_size: Tuple[int, int], norm_cfg: dict):
        super().__init__()
        kh, kw = kernel_size
        self.conv = nn.Conv2d(channels, channels, (kh, kw), padding=(kh // 2, kw // 2), groups=channels,
                              bias=False)
        self.bn = build_norm_layer(norm_cfg, channels)[1]

    def fold(self) -> Tuple[Tensor, Tensor]:
        """(weight, bias) of the conv with the BN (running statistics) folded in."""
        bn = self.bn
        std = torch.sqrt(bn.running_var + bn.eps)
        scale = bn.weight / std if bn.affine else 1. / std
        shift = bn.bias - bn.running_mean * scale if bn.affine else -bn.running_mean * scale
        return self.conv.weight * scale.view(-1, 1, 1, 1), shift


def _frozen_bn(norm: nn.Module) -> bool:
    """A BatchNorm that normalises with its running statistics (an affine map that folds into the conv)."""
    return (isinstance(norm, _BatchNorm) and not norm.training and norm.track_running_stats
            and norm.running_mean is not None)


def pad_to(kernel: Tensor, size: Tuple[int, int]) -> Tensor:
    """Zero-pad a (C, 1, kh, kw) kernel symmetrically to ``size``: same "same"-padded function for odd sizes."""
    dh, dw = size[0] - kernel.shape[-2], size[1] - kernel.shape[-1]
    if dh < 0 or dw < 0 or dh % 2 or dw % 2:
        raise ValueError(f'cannot centre a {tuple(kernel.shape[-2:])} kernel in {tuple(size)}')
    return F.pad(kernel, (dw // 2, dw // 2, dh // 2, dh // 2))


class LargeKernelConv(nn.Module):
    """SLaK's large depthwise convolution (official ``ReparamLargeKernelConv``).

    ``decompose=True``: ``BN(conv_{K×s}(x)) + BN(conv_{s×K}(x)) + BN(conv_{s×s}(x))`` (branches ``tall``, ``wide``,
    ``small``; official ``LoRA1``, ``LoRA2``, ``small_conv``). ``decompose=False``: ``BN(conv_{K×K}(x)) +
    BN(conv_{s×s}(x))`` (``square``; official ``lkb_origin``). The small branch exists when ``s < K``.
    After :meth:`switch_to_deploy`: one K×K depthwise conv with bias (``fused``).

    Args:
        channels (int): Input = output channels.
        kernel_size (int): The large kernel K (odd).
        small_kernel (int, optional): The small kernel s (odd), or None for no small branch.
        decompose (bool): K×s + s×K instead of K×K. Defaults to True.
        norm_cfg (dict): BatchNorm config ('BN', 'SyncBN', ...). Defaults to ``dict(type='BN')``.
        impl (str): 'auto' | 'conv' | 'fft' | 'triton', see :func:`depthwise_conv2d_multi`. With 'triton' the
            branches are computed in one pass (separate outputs for their BatchNorms while these use batch
            statistics; with running statistics — eval mode, ``norm_eval`` — the BNs are folded into the kernels
            and the branches summed in the same pass). Defaults to 'auto'.
        deploy (bool): Build the fused form directly (to load a re-parameterised checkpoint). Defaults to False.
    """

    def __init__(self, channels: int, kernel_size: int, small_kernel: Optional[int] = 5, decompose: bool = True,
                 norm_cfg: Optional[dict] = None, impl: str = 'auto', deploy: bool = False):
        super().__init__()
        if kernel_size % 2 == 0 or (small_kernel is not None and small_kernel % 2 == 0):
            raise ValueError(f'kernel sizes must be odd, got {kernel_size} and {small_kernel}')
        if impl not in IMPLS:
            raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')
        norm_cfg = norm_cfg or dict(type='BN')
        self.channels = channels
        self.kernel_size = kernel_size
        self.small_kernel = small_kernel
        self.decompose = decompose
        self.impl = impl
        k = kernel_size
        s = small_kernel if small_kernel is not None else k  # s×K strips need an s; official default 5
        # K < s is allowed (K×s strips, no small branch): the merged kernel covers both.
        self.fused_size = max(k, s) if decompose else k
        self.branch_names: List[str] = []
        if deploy:
            self.fused = self._fused_conv()
            return
        if decompose:
            if small_kernel is None:
                raise ValueError('decompose=True needs a small_kernel (the width of the K×s strips)')
            self.tall = ConvBN(channels, (k, s), norm_cfg)
            self.wide = ConvBN(channels, (s, k), norm_cfg)
            self.branch_names += ['tall', 'wide']
        else:
            self.square = ConvBN(channels, (k, k), norm_cfg)
            self.branch_names.append('square')
        if small_kernel is not None and small_kernel < kernel_size:
            self.small = ConvBN(channels, (s, s), norm_cfg)
            self.branch_names.append('small')

    def _fused_conv(self) -> nn.Conv2d:
        m = self.fused_size
        return nn.Conv2d(self.channels, self.channels, m, padding=m // 2, groups=self.channels, bias=True)

    @property
    def deployed(self) -> bool:
        return hasattr(self, 'fused')

    def kernel_sizes(self) -> List[Tuple[int, int]]:
        if self.deployed:
            return [tuple(self.fused.weight.shape[-2:])]
        return [tuple(getattr(self, name).conv.weight.shape[-2:]) for name in self.branch_names]

    def forward(self, x: Tensor) -> Tensor:
        impl = self.impl
        if impl == 'auto':
            impl = choose_impl(x.device, self.kernel_sizes(), _compute_dtype(x))
        if self.deployed:
            return depthwise_conv2d(x, self.fused.weight, self.fused.bias, impl)
        branches = [getattr(self, name) for name in self.branch_names]
        if impl == 'triton' and all(_frozen_bn(b.bn) for b in branches):
            # BNs on running statistics are affine: fold them and sum the branches inside the kernel (one output,
            # gradients flow to the kernels and the BNs' affine parameters through the fold)
            from .triton_dwconv import depthwise_conv2d_triton
            folded = [b.fold() for b in branches]
            return depthwise_conv2d_triton(x, [w for w, _ in folded], [b for _, b in folded], summed=True)
        outs = depthwise_conv2d_multi(x, [b.conv.weight for b in branches], None, impl)
        out = branches[0].bn(outs[0])
        for branch, y in zip(branches[1:], outs[1:]):
            out = out + branch.bn(y)
        return out

    @torch.no_grad()
    def fused_kernel(self) -> Tuple[Tensor, Tensor]:
        """(K×K weight, bias) of the re-parameterised conv: BNs folded, kernels zero-padded to K×K and summed."""
        m = self.fused_size
        weight, bias = 0, 0
        for name in self.branch_names:
            w, b = getattr(self, name).fold()
            weight = weight + pad_to(w, (m, m))
            bias = bias + b
        return weight, bias

    def switch_to_deploy(self) -> None:
        """Replace the BN'd branches by one K×K depthwise conv with bias (eval-mode function unchanged)."""
        if self.deployed:
            return
        weight, bias = self.fused_kernel()
        ref = getattr(self, self.branch_names[0]).conv.weight
        self.fused = self._fused_conv().to(device=ref.device, dtype=ref.dtype)
        self.fused.weight.data.copy_(weight)
        self.fused.bias.data.copy_(bias)
        for name in self.branch_names:
            delattr(self, name)
        self.branch_names = []

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, kernel_size={self.kernel_size}, small_kernel={self.small_kernel}, '
                f'decompose={self.decompose}, impl={self.impl!r}, deployed={self.deployed}')

