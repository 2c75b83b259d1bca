"""Triton kernels of :mod:`mmrevcol.models.layers.triton_dwconv` (imported only when a kernel is launched).

The functions are plain Python, decorated by :func:`mmrevcol.models.layers.triton_dwconv.kernels` with
``triton.jit`` at first use: Triton fixes a kernel's mode (compiled, or its CPU interpreter under
``TRITON_INTERPRET=1``) when the decorator runs, so decorating lazily, once per mode, keeps the mode a property
of the launch rather than of whoever imported this module first.

Conventions shared by both kernels:

* ``taps`` is an int32 (T, 2) table of offsets ``(dy, dx)``, the union of up to three centred odd kernels
  (branches ``0..NB-1``); branch ``o`` owns the contiguous range ``[lo_o, hi_o)`` of it; tap ``(dy, dx)`` of a
  kh×kw kernel is its element ``k = (dy + kh // 2) * kw + dx + kw // 2`` (``K = kh * kw``);
* the tile kernel reads weights tap-major, (K, C) contiguous (a tap's weights for a block of channels are one
  contiguous load); the weight gradient is written channel-major, (C, K) per batch split;
* tensors are addressed through their strides (N, C, H, W order), so NCHW and channels-last both work; the block
  shape says which dimension the threads run along;
* every product is accumulated in float32; outputs are stored in their tensor's dtype;
* no ``@triton.jit`` function of Triton's library (``tl.zeros``, ``tl.sum``, ...) is called: see ``_sum_combine``.
"""
import triton.language as tl
from triton.runtime.jit import JITFunction


def _add(a, b):
    return a + b


# Only builtins of triton.language below (``tl.full``, ``tl.reduce``; not ``tl.zeros``, ``tl.sum``): Triton's own
# ``@jit`` library functions are decorated at ``import triton``, so under an interpreter switched on later they are
# compiled-mode objects the interpreter refuses to call ("Cannot call @triton.jit'd outside of the scope of a
# kernel"). The sum's combine function is the one ``tl.sum`` uses (the compiler inlines it; the interpreter
# recognises it and sums with numpy instead of calling it element by element), or an equivalent JITFunction.
_sum_combine = getattr(getattr(tl, 'standard', None), '_sum_combine', None) or JITFunction(_add)


def dw_fwd_kernel(in0, in1, in2, out0, out1, out2, w0, w1, w2, b0, b1, b2, taps,
                  T, lo0, hi0, lo1, hi1, lo2, hi2,
                  ph0, pw0, kw0, K0, ph1, pw1, kw1, K1, ph2, pw2, kw2, K2,
                  C, H, W, num_cb, num_tw,
                  isn, isc, ish, isw, osn, osc, osh, osw,
                  NB: tl.constexpr, MULTI_IN: tl.constexpr, MULTI_OUT: tl.constexpr, FLIP: tl.constexpr,
                  HAS_BIAS: tl.constexpr, BC: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    """``out_o[p] = sum_{t in o} W_o[t] * in[p + tap_t]`` on a (BC, BH, BW) tile of one image.

    - forward, separate outputs (training: one BatchNorm per branch): ``MULTI_OUT``, one input;
    - forward, summed (BatchNorms folded): one input, one output;
    - input gradient: ``FLIP`` (``p - tap``), one output; ``MULTI_IN`` reads each branch's output gradient.
    Each shifted input tile is loaded once per tap and used by every branch that has the tap.
    """
    pid0 = tl.program_id(0)
    pid1 = tl.program_id(1)
    n = pid0 // num_cb
    cb = pid0 % num_cb
    th = pid1 // num_tw
    tw = pid1 % num_tw
    c = cb * BC + tl.arange(0, BC)
    h = th * BH + tl.arange(0, BH)
    w = tw * BW + tl.arange(0, BW)
    cmask = c < C
    c3 = c[:, None, None]
    h3 = h[None, :, None]
    w3 = w[None, None, :]
    omask = (c3 < C) & (h3 < H) & (w3 < W)
    # tile offsets once; per tap only a scalar shift of them, and the bounds on the (BH,) / (BW,) vectors
    off0 = n.to(tl.int64) * isn + c3 * isc + h3 * ish + w3 * isw
    acc0 = tl.full([BC, BH, BW], 0., tl.float32)
    acc1 = tl.full([BC, BH, BW], 0., tl.float32)
    acc2 = tl.full([BC, BH, BW], 0., tl.float32)
    for t in range(0, T):
        dy = tl.load(taps + 2 * t)
        dx = tl.load(taps + 2 * t + 1)
        if FLIP:
            sy = -dy
            sx = -dx
        else:
            sy = dy
            sx = dx
        hh = h3 + sy
        ww = w3 + sx
        m = omask & ((hh >= 0) & (hh < H)) & ((ww >= 0) & (ww < W))
        off = off0 + (sy * ish + sx * isw)
        if not MULTI_IN:
            v = tl.load(in0 + off, mask=m, other=0.).to(tl.float32)
        if (t >= lo0) & (t < hi0):
            wt = tl.load(w0 + ((dy + ph0) * kw0 + dx + pw0) * C + c, mask=cmask, other=0.).to(tl.float32)
            if MULTI_IN:
                v = tl.load(in0 + off, mask=m, other=0.).to(tl.float32)
            acc0 += wt[:, None, None] * v
        if NB > 1:
            if (t >= lo1) & (t < hi1):
                wt = tl.load(w1 + ((dy + ph1) * kw1 + dx + pw1) * C + c, mask=cmask, other=0.).to(tl.float32)
                if MULTI_IN:
                    v = tl.load(in1 + off, mask=m, other=0.).to(tl.float32)
                if MULTI_OUT:
                    acc1 += wt[:, None, None] * v
                else:
                    acc0 += wt[:, None, None] * v
        if NB > 2:
            if (t >= lo2) & (t < hi2):
                wt = tl.load(w2 + ((dy + ph2) * kw2 + dx + pw2) * C + c, mask=cmask, other=0.).to(tl.float32)
                if MULTI_IN:
                    v = tl.load(in2 + off, mask=m, other=0.).to(tl.float32)
                if MULTI_OUT:
                    acc2 += wt[:, None, None] * v
                else:
                    acc0 += wt[:, None, None] * v
    obase = n.to(tl.int64) * osn + c3 * osc + h3 * osh + w3 * osw
    if HAS_BIAS:
        acc0 += tl.load(b0 + c, mask=cmask, other=0.).to(tl.float32)[:, None, None]
    tl.store(out0 + obase, acc0.to(out0.dtype.element_ty), mask=omask)
    if MULTI_OUT:
        if NB > 1:
            if HAS_BIAS:
                acc1 += tl.load(b1 + c, mask=cmask, other=0.).to(tl.float32)[:, None, None]
            tl.store(out1 + obase, acc1.to(out1.dtype.element_ty), mask=omask)
        if NB > 2:
            if HAS_BIAS:
                acc2 += tl.load(b2 + c, mask=cmask, other=0.).to(tl.float32)[:, None, None]
            tl.store(out2 + obase, acc2.to(out2.dtype.element_ty), mask=omask)


def dw_wgrad_kernel(x, g0, g1, g2, dw0, dw1, dw2, taps,
                    T, lo0, hi0, lo1, hi1, lo2, hi2,
                    ph0, pw0, kw0, K0, ph1, pw1, kw1, K1, ph2, pw2, kw2, K2,
                    N, C, H, W, n_per_split,
                    xsn, xsc, xsh, xsw, gsn, gsc, gsh, gsw,
                    NB: tl.constexpr, MULTI_G: tl.constexpr,
                    BC: tl.constexpr, BT: tl.constexpr, BP: tl.constexpr):
    """``dW_o[c, t] = sum_{n, p} x[n, c, p + tap_t] * g_o[n, c, p]`` for a (BC channels, BT taps) block over the
    images ``[split * n_per_split, ...)``; writes float32 partial sums ``dw_o[split, c, k]``.

    Each shifted input tile is loaded once for all branches; ``MULTI_G``: one output gradient per branch
    (training), else one shared by all (summed output).
    """
    cb = tl.program_id(0)
    tb = tl.program_id(1)
    sp = tl.program_id(2)
    c = cb * BC + tl.arange(0, BC)
    cmask = c < C
    t = tb * BT + tl.arange(0, BT)
    tmask = t < T
    dy = tl.load(taps + 2 * t, mask=tmask, other=0)
    dx = tl.load(taps + 2 * t + 1, mask=tmask, other=0)
    t_first = tb * BT
    t_last = t_first + BT
    use0 = (t_first < hi0) & (t_last > lo0)
    use1 = (t_first < hi1) & (t_last > lo1)
    use2 = (t_first < hi2) & (t_last > lo2)
    c3 = c[:, None, None]
    dy3 = dy[None, :, None]
    dx3 = dx[None, :, None]
    ct_mask = (c3 < C) & tmask[None, :, None]
    toff = dy3 * xsh + dx3 * xsw  # (1, BT, 1): the taps' shifts of the input
    # element-wise accumulators, reduced over the positions once at the end (no reduction inside the loop)
    acc0 = tl.full([BC, BT, BP], 0., tl.float32)
    acc1 = tl.full([BC, BT, BP], 0., tl.float32)
    acc2 = tl.full([BC, BT, BP], 0., tl.float32)
    HW = H * W
    n_first = sp * n_per_split
    n_last = tl.minimum(n_first + n_per_split, N)
    for n in range(n_first, n_last):
        xb = tl.cast(n, tl.int64) * xsn + c3 * xsc
        gb = tl.cast(n, tl.int64) * gsn + c[:, None] * gsc
        for p0 in range(0, HW, BP):
            p = p0 + tl.arange(0, BP)
            pmask = p < HW
            ph = p // W
            pw = p % W
            hh = ph[None, None, :] + dy3
            ww = pw[None, None, :] + dx3
            m = ct_mask & pmask[None, None, :] & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
            xv = tl.load(x + (xb + (ph * xsh + pw * xsw)[None, None, :] + toff), mask=m, other=0.).to(tl.float32)
            gmask = cmask[:, None] & pmask[None, :]
            goff = gb + ph[None, :] * gsh + pw[None, :] * gsw
            if MULTI_G:
                if use0:
                    gv = tl.load(g0 + goff, mask=gmask, other=0.).to(tl.float32)
                    acc0 += xv * gv[:, None, :]
                if NB > 1:
                    if use1:
                        gv = tl.load(g1 + goff, mask=gmask, other=0.).to(tl.float32)
                        acc1 += xv * gv[:, None, :]
                if NB > 2:
                    if use2:
                        gv = tl.load(g2 + goff, mask=gmask, other=0.).to(tl.float32)
                        acc2 += xv * gv[:, None, :]
            else:
                gv = tl.load(g0 + goff, mask=gmask, other=0.).to(tl.float32)
                acc0 += xv * gv[:, None, :]
    sum0 = tl.reduce(acc0, 2, _sum_combine)
    act = tmask & (t >= lo0) & (t < hi0)
    widx = (dy + ph0) * kw0 + dx + pw0
    tl.store(dw0 + sp * C * K0 + c[:, None] * K0 + widx[None, :], sum0, mask=cmask[:, None] & act[None, :])
    if NB > 1:
        act = tmask & (t >= lo1) & (t < hi1)
        widx = (dy + ph1) * kw1 + dx + pw1
        if MULTI_G:
            acc = tl.reduce(acc1, 2, _sum_combine)
        else:
            acc = sum0
        tl.store(dw1 + sp * C * K1 + c[:, None] * K1 + widx[None, :], acc, mask=cmask[:, None] & act[None, :])
    if NB > 2:
        act = tmask & (t >= lo2) & (t < hi2)
        widx = (dy + ph2) * kw2 + dx + pw2
        if MULTI_G:
            acc = tl.reduce(acc2, 2, _sum_combine)
        else:
            acc = sum0
        tl.store(dw2 + sp * C * K2 + c[:, None] * K2 + widx[None, :], acc, mask=cmask[:, None] & act[None, :])
