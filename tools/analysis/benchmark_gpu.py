"""One GPU benchmark command: every table of issue #19 in one run of at most 8 minutes on one GPU.

Steps (each time-boxed and independent: on CUDA each runs in its own process, so a crash or a timeout costs its
rows only; ``--steps`` picks some):

============== ========================================================================================================
``check``      first: the Triton kernels (forward, input / weight gradients) against float64 ``F.conv2d`` at
               SLaK-T's stage shapes, and CUDA-graph replays against eager forwards, on this device
``slak-conv``  SLaK-T, ``impl='conv'`` (today's), fp32 / bf16 autocast x NCHW / channels-last: training and
               inference img/s (batch 32, 224²)
``slak-triton`` the same with ``impl='triton'``
``slak-fft``   the same with ``impl='fft'``
``slak-deployed`` the re-parameterised SLaK-T (one K×K kernel per block), inference, conv / fft / triton
``convnext``   mmpretrain's ConvNeXt-T, the same grid (the reference of the SLaK ratios)
``infer``      inference img/s at batch 1 and 128: RevCol-T (as is, deployed, deployed + CUDA graph), SLaK-T (auto,
               triton, auto + CUDA graph), HIRI-ViT-S (448²), ConvNeXt-T (eager, CUDA graph); fp32
``detection``  batch 1 at 800×1333 (padded to 800×1344 as mmdet's ``pad_size_divisor=32``): RevCol-T vs
               ConvNeXt-T, four output maps each
``revcol-rev`` RevCol-T widths at 4 / 8 / 16 columns, reversible vs plain: training-step activation peak and time
               (bf16 autocast batch 64, fp32 batch 32)
``sparsity``   ``DynamicSparsityHook`` under mmengine's fp16 ``AmpOptimWrapper``: masks exact (pruned weights and
               their optimizer state zero, density constant) after every real and every skipped step
============== ========================================================================================================

Output: JSON lines (one per measurement) and markdown tables on stdout — the device named first — plus
``benchmark_gpu.jsonl`` and ``benchmark_gpu.md`` under ``--out-dir`` (default ``$OUT`` when set). The acceptance
ratios of the issue are computed from rows of the same run (today's SLaK-T is the ``conv`` fp32 NCHW row).

``--profile`` instead prints ``torch.profiler`` tables of one SLaK-T training step for every combination of
implementation, fp32 / bf16 autocast, NCHW / channels-last and ``cudnn.benchmark`` off / on (where the time goes).

Examples::

    # the GPU run (one command; steps boxed to 8 minutes in all)
    python tools/analysis/benchmark_gpu.py --device cuda
    # where the time of a SLaK-T training step goes
    python tools/analysis/benchmark_gpu.py --device cuda --profile
    # smoke run on CPU, tiny sizes (the test suite runs it)
    python tools/analysis/benchmark_gpu.py --device cpu --quick

Needs mmengine, mmcv (mmcv-lite is enough: nothing here imports ``mmcv.ops``, mmdet or mmseg) and mmpretrain.
"""
import argparse
import contextlib
import copy
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time
import traceback
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402
from torch import nn  # noqa: E402

from mmrevcol.utils.cli import run_tool  # noqa: E402
from mmrevcol.utils.profiling import describe_device, peak_memory, sync_device, time_fn  # noqa: E402

ROW_PREFIX = '@row '  # how a step's process hands its rows to the parent
DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}

# step -> time box on a GPU (seconds); the --quick CPU run boxes each at 60 s
STEPS: Dict[str, int] = {
    'check': 90,  # the compiled Triton kernels and the CUDA graphs against references, on this device
    'slak-conv': 60,
    'slak-triton': 120,  # includes Triton's first compilation of each kernel variant
    'convnext': 40,
    'infer': 90,
    'detection': 45,
    'revcol-rev': 90,
    'sparsity': 40,
    'slak-fft': 60,
    'slak-deployed': 60,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--quick', action='store_true', help='tiny models and sizes (a smoke run, e.g. on CPU)')
    p.add_argument('--steps', nargs='+', default=list(STEPS), choices=list(STEPS), metavar='STEP',
                   help=f'steps to run, in this order (default: all): {", ".join(STEPS)}')
    p.add_argument('--budget', type=float, default=None,
                   help='seconds for all steps (default 480; 110 with --quick)')
    p.add_argument('--isolate', choices=['auto', 'process', 'none'], default='auto',
                   help="run each step in its own process ('auto': on CUDA) or in this one")
    p.add_argument('--out-dir', default=os.environ.get('OUT'), help='where to copy the results (default $OUT)')
    p.add_argument('--iters', type=int, default=None, help='calls per timed round (default 5; 1 with --quick)')
    p.add_argument('--repeats', type=int, default=None, help='timed rounds, the fastest kept (default 3; 1)')
    p.add_argument('--cudnn-benchmark', action='store_true', help='torch.backends.cudnn.benchmark = True')
    p.add_argument('--profile', action='store_true', help='print torch.profiler tables of a SLaK-T training step')
    p.add_argument('--profile-impls', nargs='+', default=None, choices=['conv', 'fft', 'triton'],
                   help="implementations to profile (default: conv and triton on CUDA, conv on CPU)")
    p.add_argument('--step', default=None, help=argparse.SUPPRESS)  # internal: run one step, print its rows
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------------
# Sizes.
# ----------------------------------------------------------------------------------------------------------------
def settings(args) -> SimpleNamespace:
    """Models and sizes of the run: the issue's, or tiny ones with ``--quick``."""
    if args.quick:
        return SimpleNamespace(
            slak=dict(arch=dict(dims=[8, 16, 16, 16], depths=[1, 1, 1, 1]), kernel_size=[7, 7, 5, 5, 3]),
            convnext=dict(arch=dict(depths=[1, 1, 1, 1], channels=[8, 16, 16, 16])),
            revcol_widths=dict(channels=[8, 16, 16, 16], layers=[1, 1, 1, 1]), revcol_arch='tiny-quick',
            hiri=dict(arch=dict(channels=[8, 16, 16, 16, 16], depths=[1, 1, 1, 1, 1], expansions=[2] * 5,
                                num_heads=[0, 0, 0, 2, 2], sr_ratios=[1] * 5, stem_channels=8)),
            size=32, hiri_size=64, batch=2, infer_batches=(1, 2), det_size=(32, 64), columns=(2, 3),
            rev_runs=(('fp32', 1), ), sparsity_steps=4, iters=args.iters or 1, repeats=args.repeats or 1,
            warmup=1, names=dict(slak='SLaK (tiny)', convnext='ConvNeXt (tiny)', revcol='RevCol (tiny)',
                                 hiri='HIRI-ViT (tiny)'))
    return SimpleNamespace(
        slak=dict(arch='tiny', kernel_size=[51, 49, 47, 13, 5]), convnext=dict(arch='tiny'),
        revcol_widths=dict(channels=[64, 128, 256, 512], layers=[2, 2, 4, 2]), revcol_arch='tiny',
        hiri=dict(arch='s'), size=224, hiri_size=448, batch=32, infer_batches=(1, 128), det_size=(800, 1344),
        columns=(4, 8, 16), rev_runs=(('bf16', 64), ('fp32', 32)), sparsity_steps=30, iters=args.iters or 5,
        repeats=args.repeats or 3, warmup=2,
        names=dict(slak='SLaK-T', convnext='ConvNeXt-T', revcol='RevCol-T', hiri='HIRI-ViT-S'))


def build_slak(s, impl: str, **kwargs) -> nn.Module:
    from mmrevcol.models import SLaK
    return SLaK(**s.slak, impl=impl, out_indices=kwargs.pop('out_indices', (3, )), out_norm=False, **kwargs)


def build_convnext(s, out_indices=(3, ), **kwargs) -> nn.Module:
    from mmpretrain.models.backbones import ConvNeXt
    return ConvNeXt(**s.convnext, out_indices=out_indices, **kwargs)


def on(model: nn.Module, device: torch.device, train: bool = False) -> nn.Module:
    """``model`` on ``device`` in train or eval mode (mmpretrain's ConvNeXt.train() does not return self)."""
    model.to(device).train(train)
    return model


def build_revcol(s, out_indices=(3, ), **kwargs) -> nn.Module:
    from mmrevcol.models import RevCol
    arch = 'tiny' if s.revcol_arch == 'tiny' else dict(s.revcol_widths, num_columns=4)
    return RevCol(arch=arch, out_indices=out_indices, **kwargs)


def build_hiri(s) -> nn.Module:
    from mmrevcol.models import HIRIViT
    return HIRIViT(**s.hiri)


# ----------------------------------------------------------------------------------------------------------------
# Measurements (timing, sync and memory from mmrevcol.utils.profiling).
# ----------------------------------------------------------------------------------------------------------------
def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def train_step(model: nn.Module, x: torch.Tensor, dtype: Optional[torch.dtype]) -> Callable[[], None]:
    def step():
        model.zero_grad(set_to_none=False)
        with autocast(x.device, dtype):
            outs = model(x)
        sum(o.float().mean() for o in outs).backward()
    return step


def infer_step(model: nn.Module, x: torch.Tensor, dtype: Optional[torch.dtype]) -> Callable[[], None]:
    def step():
        with torch.inference_mode(), autocast(x.device, dtype):
            model(x)
    return step


def images_per_second(step: Callable[[], None], batch: int, device: torch.device, s) -> float:
    return batch / time_fn(step, device, iters=s.iters, warmup=s.warmup, repeats=s.repeats)


def to_layout(model: nn.Module, x: torch.Tensor, layout: str):
    fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
    return model.to(memory_format=fmt), x.contiguous(memory_format=fmt)


def triton_reason(device: torch.device) -> Optional[str]:
    from mmrevcol.models.layers import triton_dwconv
    return triton_dwconv.unavailable_reason(device)


class Emitter:
    """Prints each row as a JSON line (and, in a step's process, with the prefix its parent reads)."""

    def __init__(self, child: bool):
        self.child = child
        self.rows: List[dict] = []

    def __call__(self, **row) -> None:
        self.rows.append(row)
        print((ROW_PREFIX if self.child else '') + json.dumps(row), flush=True)

    def guarded(self, base: dict, fn: Callable[[], dict]) -> None:
        """One measurement: a failure becomes an error row (the step goes on)."""
        try:
            self(**base, **fn(), status='ok')
        except Exception as e:  # one failure costs one row
            self(**base, status='error', error=f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'[:300])
            traceback.print_exc(file=sys.stderr)
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------------
# Steps.
# ----------------------------------------------------------------------------------------------------------------
def slak_grid(args, emit: Emitter, impl: str, name: str, build: Callable[[], nn.Module]) -> None:
    """Training and inference img/s over fp32 / bf16 x NCHW / channels-last for one model."""
    s, device = settings(args), torch.device(args.device)
    if impl == 'triton' and triton_reason(device):
        emit(table='slak', model=name, impl=impl, status='skipped', reason=triton_reason(device))
        return
    torch.manual_seed(0)
    model = build().to(device)
    for dtype in ('fp32', 'bf16'):
        for layout in ('nchw', 'channels_last'):
            model, x = to_layout(model, torch.randn(s.batch, 3, s.size, s.size, device=device), layout)
            base = dict(table='slak', model=name, impl=impl, dtype=dtype, layout=layout, batch=s.batch, size=s.size)
            model.train()
            emit.guarded(dict(base, mode='train'), lambda: dict(
                img_s=images_per_second(train_step(model, x, DTYPES[dtype]), s.batch, device, s)))
            model.eval()
            emit.guarded(dict(base, mode='infer'), lambda: dict(
                img_s=images_per_second(infer_step(model, x, DTYPES[dtype]), s.batch, device, s)))


def step_slak(impl: str):
    def run(args, emit):
        s = settings(args)
        slak_grid(args, emit, impl, s.names['slak'], lambda: build_slak(s, impl))
    return run


def step_convnext(args, emit):
    s = settings(args)
    slak_grid(args, emit, '-', s.names['convnext'], lambda: build_convnext(s))


def step_slak_deployed(args, emit):
    s, device = settings(args), torch.device(args.device)
    torch.manual_seed(0)
    model = on(build_slak(s, 'conv'), device)
    model.switch_to_deploy()
    x = torch.randn(s.batch, 3, s.size, s.size, device=device)
    for impl in ('conv', 'fft', 'triton'):
        for dtype in ('fp32', 'bf16'):
            base = dict(table='slak', model=s.names['slak'] + ' deployed', impl=impl, dtype=dtype, layout='nchw',
                        batch=s.batch, size=s.size, mode='infer')
            if impl == 'triton' and triton_reason(device):
                emit(**base, status='skipped', reason=triton_reason(device))
                continue
            for m in model.modules():
                if hasattr(m, 'impl') and hasattr(m, 'deployed'):
                    m.impl = impl
            emit.guarded(base, lambda: dict(
                img_s=images_per_second(infer_step(model, x, DTYPES[dtype]), s.batch, device, s)))


class Skip(Exception):
    """A variant that cannot run here (the reason becomes a 'skipped' row)."""


def _cuda_graph_variant(model: nn.Module, device: torch.device) -> nn.Module:
    from mmrevcol.models.layers import enable_cuda_graphs
    if device.type != 'cuda':
        raise Skip('CUDA graphs need a CUDA device')
    return enable_cuda_graphs(copy.deepcopy(model))


def inference_rows(args, emit: Emitter, table: str, variants, sizes, batches) -> None:
    """img/s of each (name, variant, build) at each size and batch; fp32, eval, inference mode."""
    device = torch.device(args.device)
    s = settings(args)
    for name, variant, build in variants:
        base = dict(table=table, model=name, variant=variant, dtype='fp32')
        torch.manual_seed(0)
        try:
            model = build()
        except Skip as e:
            emit(**base, status='skipped', reason=str(e))
            continue
        except Exception as e:
            emit(**base, status='error', error=f'{type(e).__name__}: {e}'[:300])
            continue
        for size in sizes:
            hw = size if isinstance(size, tuple) else (size, size)
            for batch in batches:
                x = torch.randn(batch, 3, *hw, device=device)
                emit.guarded(dict(base, size=f'{hw[0]}x{hw[1]}', batch=batch), lambda: dict(
                    img_s=images_per_second(infer_step(model, x, None), batch, device, s)))
        del model


def _deployed(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model).eval()
    model.switch_to_deploy()
    return model


def step_infer(args, emit):
    s, device = settings(args), torch.device(args.device)
    n = s.names
    revcol = on(build_revcol(s), device)
    slak = on(build_slak(s, 'auto'), device)
    convnext = on(build_convnext(s), device)
    variants = [
        (n['revcol'], 'eager', lambda: revcol),
        (n['revcol'], 'deployed', lambda: _deployed(revcol)),
        (n['revcol'], 'deployed + CUDA graph', lambda: _cuda_graph_variant(_deployed(revcol), device)),
        (n['slak'], 'auto', lambda: slak),
        (n['slak'], 'triton', lambda: _with_impl(slak, 'triton', device)),
        (n['slak'], 'auto + CUDA graph', lambda: _cuda_graph_variant(slak, device)),
        (n['convnext'], 'eager', lambda: convnext),
        (n['convnext'], 'CUDA graph', lambda: _cuda_graph_variant(convnext, device)),
    ]
    inference_rows(args, emit, 'infer', variants, [s.size], s.infer_batches)
    hiri = [(n['hiri'], 'eager', lambda: on(build_hiri(s), device))]
    inference_rows(args, emit, 'infer', hiri, [s.hiri_size], s.infer_batches)


def _with_impl(model: nn.Module, impl: str, device: torch.device) -> nn.Module:
    reason = triton_reason(device) if impl == 'triton' else None
    if reason:
        raise Skip(reason)
    model = copy.deepcopy(model)
    for m in model.modules():
        if hasattr(m, 'impl') and hasattr(m, 'deployed'):
            m.impl = impl
    return model


def step_detection(args, emit):
    s, device = settings(args), torch.device(args.device)
    n = s.names
    four = (0, 1, 2, 3)
    revcol = on(build_revcol(s, out_indices=four), device)
    convnext = on(build_convnext(s, out_indices=four, gap_before_final_norm=False), device)
    variants = [
        (n['revcol'], 'eager', lambda: revcol),
        (n['revcol'], 'deployed', lambda: _deployed(revcol)),
        (n['revcol'], 'deployed + CUDA graph', lambda: _cuda_graph_variant(_deployed(revcol), device)),
        (n['convnext'], 'eager', lambda: convnext),
        (n['convnext'], 'CUDA graph', lambda: _cuda_graph_variant(convnext, device)),
    ]
    inference_rows(args, emit, 'detection', variants, [s.det_size], (1, ))


def step_revcol_rev(args, emit):
    from mmrevcol.models import RevCol
    s, device = settings(args), torch.device(args.device)
    for dtype, batch in s.rev_runs:
        x = torch.randn(batch, 3, s.size, s.size, device=device)
        for columns in s.columns:
            for reversible in (False, True):
                base = dict(table='revcol_rev', dtype=dtype, batch=batch, size=s.size, columns=columns,
                            mode='reversible' if reversible else 'plain')

                def measure():
                    torch.manual_seed(0)
                    model = on(RevCol(arch=dict(s.revcol_widths, num_columns=columns), reversible=reversible,
                                      out_indices=(0, 1, 2, 3)), device, train=True)
                    step = train_step(model, x, DTYPES[dtype])
                    step()  # gradient buffers exist from here on: the peak below is what a step adds
                    act = peak_memory(step, device)
                    seconds = time_fn(step, device, iters=max(1, s.iters // 2), warmup=1, repeats=s.repeats)
                    return dict(act_mb=act / 2**20, step_ms=seconds * 1e3)

                emit.guarded(base, measure)


def step_sparsity(args, emit):
    """fp16 AMP (bf16 on CPU) with a real loss scaler, injected overflows: after every real and skipped step each
    pruned weight and its optimizer state is exactly zero, and the density is exactly the target."""
    from mmrevcol.engine.sparsity import DynamicSparsityHook
    s, device = settings(args), torch.device(args.device)
    torch.manual_seed(0)
    model = on(build_slak(s, 'auto', out_indices=(3, )), device, train=True)
    head = nn.Linear(model.dims[-1], 10).to(device)
    net = nn.ModuleDict(dict(backbone=model, head=head))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
    if device.type == 'cuda':
        from mmengine.optim import AmpOptimWrapper
        wrapper = AmpOptimWrapper(optimizer=optimizer, dtype='float16', loss_scale='dynamic')
        scaler, dtype, name = wrapper.loss_scaler, torch.float16, 'mmengine AmpOptimWrapper fp16'

        def update(loss):
            wrapper.update_params(loss)
    else:  # mmengine's wrapper needs an accelerator; the same GradScaler steps on CPU
        scaler = torch.amp.GradScaler('cpu', init_scale=2.**16)
        dtype, name = torch.bfloat16, 'torch GradScaler (CPU) bf16'

        def update(loss):
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
    hook = DynamicSparsityHook(sparsity=0.4, init='uniform', update_interval=max(2, s.sparsity_steps // 3), seed=0)
    hook.setup(net, [optimizer])
    target = hook.density
    x = torch.randn(s.batch, 3, s.size, s.size, device=device)
    labels = torch.arange(s.batch, device=device) % 10
    overflow_at = {1, 2, s.sparsity_steps // 2}
    skipped = real = updates = 0
    worst = 0.
    exact = True
    for i in range(s.sparsity_steps):
        before = {n: p.detach().clone() for n, p in hook._params.items()}
        scale = scaler.get_scale()
        with torch.autocast(device.type, dtype=dtype):
            logits = head(model(x)[0].mean((-2, -1)))
        loss = nn.functional.cross_entropy(logits.float(), labels)
        if i in overflow_at:
            loss = loss * float('inf')  # an fp16 overflow: the scaler must skip this step
        update(loss)
        was_skipped = scaler.get_scale() < scale
        skipped += was_skipped
        real += not was_skipped
        if (i + 1) % hook.update_interval == 0:
            hook.update(i + 1, s.sparsity_steps)
            updates += 1
        hook.apply_masks([optimizer])  # what the hook's after_train_iter does
        for n, mask in hook.masks.items():
            p = hook._params[n]
            m = mask.to(p.device)
            off = p.detach()[~m]
            worst = max(worst, off.abs().max().item() if off.numel() else 0.)
            state = optimizer.state.get(p, {})
            exact &= bool((off == 0).all()) and all(
                bool((state[k][~m] == 0).all()) for k in ('exp_avg', 'exp_avg_sq') if k in state)
            if was_skipped and (i + 1) % hook.update_interval != 0:
                exact &= torch.equal(p.detach(), before[n])  # a skipped step changes nothing
        exact &= hook.density == target
    emit(table='sparsity', wrapper=name, steps=s.sparsity_steps, skipped=skipped, real=real, updates=updates,
         density=hook.density, target=target, max_abs_pruned=worst, exact=bool(exact and skipped > 0),
         status='ok' if exact and skipped > 0 else 'error')


def step_check(args, emit):
    """Before any timing: the Triton kernels (forward, input and weight gradients) against float64 ``F.conv2d`` at
    SLaK-T's stage shapes, and CUDA-graph replays against eager forwards, on this device."""
    import torch.nn.functional as F

    from mmrevcol.models.layers.triton_dwconv import depthwise_conv2d_triton
    s, device = settings(args), torch.device(args.device)
    k = s.slak['kernel_size']
    stages = ([(8, 16, k[0]), (16, 8, k[1])] if args.quick else
              [(124, 56, k[0]), (249, 28, k[1]), (499, 14, k[2]), (998, 7, k[3])])
    small = k[4]
    reason = triton_reason(device)
    for c, hw, big in stages:
        for summed in (False, True):
            # bf16: one rounding of each stored value (2^-8 relative); Triton's CPU interpreter truncates instead
            # of rounding to nearest (2^-7)
            bf16_tol = 1e-2 if device.type == 'cpu' else 5e-3
            for dtype, layout, tol in (('fp32', 'nchw', 1e-5), ('fp32', 'channels_last', 1e-5),
                                       ('bf16', 'nchw', bf16_tol)):
                base = dict(table='check', what='triton vs F.conv2d (float64)', shape=f'2x{c}x{hw}x{hw}',
                            kernels=f'{big}x{small}+{small}x{big}+{small}x{small}', summed=summed, dtype=dtype,
                            layout=layout, tol=tol)
                if reason:
                    emit(**base, status='skipped', reason=reason)
                    continue

                def measure():
                    gen = torch.Generator(device).manual_seed(0)
                    fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format
                    x = torch.randn(2, c, hw, hw, device=device, generator=gen, dtype=torch.float64)
                    ws = [torch.randn(c, 1, *shape, device=device, generator=gen, dtype=torch.float64) * 0.1
                          for shape in ((big, small), (small, big), (small, small))]
                    xt = x.to(DTYPES[dtype] or torch.float32).contiguous(memory_format=fmt).requires_grad_(True)
                    wt = [w.to(xt.dtype).requires_grad_(True) for w in ws]
                    outs = depthwise_conv2d_triton(xt, wt, summed=summed)
                    outs = [outs] if summed else outs
                    gs = [torch.randn(o.shape, device=device, generator=gen, dtype=torch.float64) for o in outs]
                    sum((o * g.to(o.dtype)).sum() for o, g in zip(outs, gs)).backward()
                    xr = xt.detach().double().requires_grad_(True)
                    wr = [w.detach().double().requires_grad_(True) for w in wt]
                    refs = [F.conv2d(xr, w, padding=(w.shape[-2] // 2, w.shape[-1] // 2), groups=c) for w in wr]
                    refs = [sum(refs)] if summed else refs
                    sum((o * g.to(xt.dtype).double()).sum() for o, g in zip(refs, gs)).backward()
                    pairs = list(zip(outs, refs)) + [(xt.grad, xr.grad)] + [(a.grad, b.grad) for a, b in zip(wt, wr)]
                    err = max(((a.double() - b).abs().max() / b.abs().max()).item() for a, b in pairs)
                    return dict(max_rel_err=err, passed=err <= tol)

                emit.guarded(base, measure)
    if device.type != 'cuda':
        emit(table='check', what='CUDA graph vs eager', status='skipped', reason='CUDA graphs need a CUDA device')
        return
    from mmrevcol.models.layers import enable_cuda_graphs
    candidates = [('RevCol deployed', lambda: _deployed(on(build_revcol(s, out_indices=(0, 1, 2, 3)), device)))]
    if not reason:
        candidates.append(('SLaK impl=triton', lambda: on(build_slak(s, 'triton'), device)))
    for name, build in candidates:
        def measure():
            torch.manual_seed(0)
            model = build()
            graphed = enable_cuda_graphs(copy.deepcopy(model))
            err = 0.
            with torch.inference_mode():
                for size in ((s.size, s.size), (s.size, s.size + 32), (s.size, s.size)):
                    x = torch.randn(1, 3, *size, device=device)
                    for a, b in zip(graphed(x), model(x)):
                        err = max(err, ((a - b).abs().max() / b.abs().max()).item())
            stats = graphed.forward.stats
            return dict(max_rel_err=err, passed=err <= 1e-5 and stats['replays'] == 3 and stats['captures'] == 2,
                        captures=stats['captures'], replays=stats['replays'])

        emit.guarded(dict(table='check', what='CUDA graph vs eager', model=name, tol=1e-5), measure)


STEP_FUNCS = {
    'check': step_check,
    'slak-conv': step_slak('conv'),
    'slak-triton': step_slak('triton'),
    'slak-fft': step_slak('fft'),
    'slak-deployed': step_slak_deployed,
    'convnext': step_convnext,
    'infer': step_infer,
    'detection': step_detection,
    'revcol-rev': step_revcol_rev,
    'sparsity': step_sparsity,
}


# ----------------------------------------------------------------------------------------------------------------
# The profile mode.
# ----------------------------------------------------------------------------------------------------------------
def profile(args) -> List[str]:
    """torch.profiler tables of one SLaK-T training step per (impl, dtype, layout, cudnn.benchmark)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    s, device = settings(args), torch.device(args.device)
    impls = args.profile_impls or (['conv', 'triton'] if device.type == 'cuda' else ['conv'])
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    from torch.autograd.profiler_util import FunctionEventAvg
    device_key = 'self_device_time_total' if hasattr(FunctionEventAvg, 'self_device_time_total') else \
        'self_cuda_time_total'
    sort_key = device_key if device.type == 'cuda' else 'self_cpu_time_total'
    tables = []
    for impl in impls:
        if impl == 'triton' and triton_reason(device):
            print(f'\n### {s.names["slak"]} impl=triton: skipped ({triton_reason(device)})')
            continue
        torch.manual_seed(0)
        model = on(build_slak(s, impl), device, train=True)
        for dtype in ('fp32', 'bf16'):
            for layout in ('nchw', 'channels_last'):
                for bench in ((False, True) if device.type == 'cuda' else (False, )):
                    torch.backends.cudnn.benchmark = bench
                    model, x = to_layout(model, torch.randn(s.batch, 3, s.size, s.size, device=device), layout)
                    step = train_step(model, x, DTYPES[dtype])
                    for _ in range(s.warmup + 1):
                        step()
                    sync_device(device)
                    with torch_profile(activities=activities) as prof:
                        step()
                        sync_device(device)
                    title = (f'{s.names["slak"]} training step, batch {s.batch}, {s.size}², impl={impl}, {dtype}, '
                             f'{layout}, cudnn.benchmark={bench}')
                    table = prof.key_averages().table(sort_by=sort_key, row_limit=15)
                    text = f'\n### {title}\n\n```\n{table}\n```'
                    print(text, flush=True)
                    tables.append(text)
    torch.backends.cudnn.benchmark = False
    return tables


# ----------------------------------------------------------------------------------------------------------------
# Running the steps, and the tables.
# ----------------------------------------------------------------------------------------------------------------
class StepTimeout(BaseException):
    """A step over its time box (a BaseException: the per-measurement ``except Exception`` must not swallow it)."""


@contextlib.contextmanager
def alarm(seconds: float):
    """Raise StepTimeout in this (main) thread after ``seconds`` (between Python operations)."""
    def handler(signum, frame):
        raise StepTimeout(f'over its time box of {seconds:.0f} s')
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_step_here(args, name: str, box: float) -> List[dict]:
    emit = Emitter(child=False)
    try:
        with alarm(box):
            STEP_FUNCS[name](args, emit)
    except (Exception, StepTimeout) as e:
        emit(table='steps', step=name, status='error', error=f'{type(e).__name__}: {e}'[:300])
        traceback.print_exc(file=sys.stderr)
    return emit.rows


def run_step_process(args, argv: List[str], name: str, box: float) -> List[dict]:
    cmd = [sys.executable, osp.abspath(__file__), *argv, '--step', name]
    rows: List[dict] = []
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=box)
        out, err, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or '')
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or '')
        code = f'timeout after {box:.0f} s'
    for line in out.splitlines():
        if line.startswith(ROW_PREFIX):
            row = json.loads(line[len(ROW_PREFIX):])
            rows.append(row)
            print(json.dumps(row), flush=True)
    if code != 0:
        tail = ' | '.join(err.strip().splitlines()[-3:])[-300:]
        row = dict(table='steps', step=name, status='error', error=f'exit {code}: {tail}')
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def fmt(v, digits=1) -> str:
    return '-' if v is None else f'{v:.{digits}f}' if isinstance(v, float) else str(v)


def ratio(a, b) -> Optional[float]:
    return a / b if a and b else None


def markdown(rows: List[dict], header: str, s) -> str:
    ok = [r for r in rows if r.get('status') == 'ok']
    out = [header, '']

    checks = [r for r in ok if r['table'] == 'check']
    if checks:
        out += ['### Correctness on this device (before any timing)', '',
                '| check | model / shape | kernels | summed | dtype | layout | max rel. error | tolerance | passed |',
                '|---|---|---|---|---|---|---|---|---|']
        for r in checks:
            out.append(f'| {r["what"]} | {r.get("model") or r.get("shape")} | {r.get("kernels", "-")} | '
                       f'{r.get("summed", "-")} | {r.get("dtype", "fp32")} | {r.get("layout", "-")} | '
                       f'{r["max_rel_err"]:.1e} | {r["tol"]:g} | {r["passed"]} |')
        out.append('')

    # SLaK per implementation
    slak = {}
    for r in ok:
        if r['table'] == 'slak':
            slak.setdefault((r['model'], r['impl'], r['dtype'], r['layout']), {})[r['mode']] = r['img_s']
    if slak:
        ref = {(d, l): v for (m, i, d, l), v in slak.items() if m == s.names['convnext']}
        out += [f'### SLaK per implementation (batch {s.batch}, {s.size}²; bf16 = autocast)', '',
                '| model | impl | dtype | layout | train img/s | × ConvNeXt | infer img/s | × ConvNeXt |',
                '|---|---|---|---|---|---|---|---|']
        for (m, i, d, l), v in slak.items():
            c = ref.get((d, l), {})
            cells = [m, i, d, l]
            for mode in ('train', 'infer'):
                cells += [fmt(v.get(mode)), fmt(ratio(v.get(mode), c.get(mode)), 2)]
            out.append('| ' + ' | '.join(cells) + ' |')
        out.append('')

    rev = {}
    for r in ok:
        if r['table'] == 'revcol_rev':
            rev.setdefault((r['dtype'], r['batch'], r['columns']), {})[r['mode']] = r
    if rev:
        out += [f'### RevCol-T widths, reversible vs plain (training step, {s.size}²; memory = what a step adds)', '',
                '| dtype | batch | columns | plain MB | reversible MB | memory ratio | plain ms | reversible ms '
                '| time ratio |',
                '|---|---|---|---|---|---|---|---|---|']
        for (d, b, c), v in rev.items():
            p, q = v.get('plain', {}), v.get('reversible', {})
            out.append(f'| {d} | {b} | {c} | {fmt(p.get("act_mb"))} | {fmt(q.get("act_mb"))} | '
                       f'{fmt(ratio(q.get("act_mb"), p.get("act_mb")), 2)} | {fmt(p.get("step_ms"))} | '
                       f'{fmt(q.get("step_ms"))} | {fmt(ratio(q.get("step_ms"), p.get("step_ms")), 2)} |')
        out.append('')

    for table, title in (('infer', 'Inference (fp32, img/s)'), ('detection', 'Detection-size inference, batch 1')):
        cells = {}
        for r in ok:
            if r['table'] == table:
                cells.setdefault((r['model'], r['variant'], r['size']), {})[r['batch']] = r['img_s']
        if not cells:
            continue
        batches = sorted({b for v in cells.values() for b in v})
        ref = {size: v for (m, var, size), v in cells.items() if m == s.names['convnext'] and var == 'eager'}
        head = ' | '.join(f'batch {b} img/s | × ConvNeXt eager' for b in batches)
        out += [f'### {title}', '', f'| model | variant | input | {head} |',
                '|---|---|---|' + '---|---|' * len(batches)]
        for (m, var, size), v in cells.items():
            out.append(f'| {m} | {var} | {size} | ' + ' | '.join(
                f'{fmt(v.get(b))} | {fmt(ratio(v.get(b), ref.get(size, {}).get(b)), 2)}' for b in batches) + ' |')
        out.append('')

    for r in ok:
        if r['table'] == 'sparsity':
            out += ['### Dynamic sparsity under AMP', '',
                    '| wrapper | steps | skipped | real | prune/regrow updates | density (target) | max abs pruned '
                    '| exact |',
                    '|---|---|---|---|---|---|---|---|',
                    f'| {r["wrapper"]} | {r["steps"]} | {r["skipped"]} | {r["real"]} | {r["updates"]} | '
                    f'{r["density"]:.4f} ({r["target"]:.4f}) | {r["max_abs_pruned"]:g} | {r["exact"]} |', '']

    out += acceptance(ok, s)
    bad = [r for r in rows if r.get('status') != 'ok' and r.get('table') != 'meta']
    if bad:
        out += ['### Not measured', '']
        for r in bad:
            key = ', '.join(f'{k}={v}' for k, v in r.items() if k not in ('table', 'status', 'error', 'reason'))
            out.append(f'- {r.get("table")}: {key} — {r.get("status")}: {r.get("error") or r.get("reason")}')
        out.append('')
    return '\n'.join(out)


def acceptance(ok: List[dict], s) -> List[str]:
    """The issue's speed criteria, from rows of this run."""
    def img(table, **key):
        for r in ok:
            if r['table'] == table and all(r.get(k) == v for k, v in key.items()):
                return r['img_s']
        return None

    n = s.names
    lines = ['### Acceptance (issue #19), from this run', '']
    checks = [r for r in ok if r['table'] == 'check']
    if checks:
        failed = [r for r in checks if not r['passed']]
        lines.append(f'- correctness checks on this device: {len(checks) - len(failed)} of {len(checks)} passed'
                     + (' — the speed rows of a failing implementation do not count' if failed else ''))
    for mode, goal in (('train', 0.5), ('infer', 0.6)):
        best = None
        for r in ok:
            if r['table'] == 'slak' and r['model'] == n['slak'] and r['mode'] == mode:
                ref = img('slak', model=n['convnext'], dtype=r['dtype'], layout=r['layout'], mode=mode)
                q = ratio(r['img_s'], ref)
                if q and (best is None or q > best[0]):
                    best = (q, r)
        if best:
            r = best[1]
            lines.append(f'- SLaK-T {mode} / ConvNeXt-T: best {best[0]:.2f}× (impl={r["impl"]}, {r["dtype"]}, '
                         f'{r["layout"]}); goal ≥ {goal}× — {"met" if best[0] >= goal else "not met"}')
    for mode in ('train', 'infer'):
        today = img('slak', model=n['slak'], impl='conv', dtype='fp32', layout='nchw', mode=mode)
        fp32 = [r['img_s'] for r in ok if r['table'] == 'slak' and r['model'] == n['slak'] and r['mode'] == mode
                and r['dtype'] == 'fp32']
        if today and fp32:
            q = max(fp32) / today
            lines.append(f'- SLaK-T fp32 {mode}: best {q:.2f}× today\'s (impl=conv, NCHW); goal ≥ 1.5× — '
                         f'{"met" if q >= 1.5 else "not met"}')
    det = f'{s.det_size[0]}x{s.det_size[1]}'
    for table, size, goal in (('infer', f'{s.size}x{s.size}', 0.8), ('detection', det, 1.0)):
        ref = img(table, model=n['convnext'], variant='eager', size=size, batch=1)
        best = max([r['img_s'] for r in ok if r['table'] == table and r['model'] == n['revcol'] and r['size'] == size
                    and r['batch'] == 1] or [0.])
        if ref and best:
            lines.append(f'- RevCol-T batch 1 at {size} / ConvNeXt-T (eager): best {best / ref:.2f}×; '
                         f'goal ≥ {goal}× — {"met" if best / ref >= goal else "not met"}')
    return lines + ['']


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        from mmrevcol.utils.errors import ExpectedError
        raise ExpectedError('--device cuda: no CUDA device here (use --device cpu --quick for a smoke run)')
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.step:  # a step's own process
        STEP_FUNCS[args.step](args, Emitter(child=True))
        return 0
    s = settings(args)
    meta = dict(table='meta', device=describe_device(device), torch=torch.__version__,
                triton=_version('triton'), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                quick=args.quick, cudnn_benchmark=args.cudnn_benchmark)
    print(json.dumps(meta), flush=True)
    header = (f'## benchmark_gpu on {meta["device"]} (torch {meta["torch"]}, triton {meta["triton"]}, CUDA '
              f'{meta["cuda"]}, cudnn.benchmark={args.cudnn_benchmark}{", quick" if args.quick else ""})')
    if args.profile:
        tables = profile(args)
        _save(args, 'benchmark_gpu_profile.md', '\n'.join([header] + tables))
        return 0
    isolate = args.isolate if args.isolate != 'auto' else ('process' if device.type == 'cuda' else 'none')
    budget = args.budget if args.budget is not None else (110. if args.quick else 480.)
    start = time.perf_counter()
    rows = [meta]
    child_argv = [a for a in argv if a not in ('--profile', )]
    for name in args.steps:
        left = budget - (time.perf_counter() - start)
        box = min(STEPS[name] if not args.quick else 60., left)
        if box < 5:
            row = dict(table='steps', step=name, status='skipped', reason='out of time (--budget)')
            rows.append(row)
            print(json.dumps(row), flush=True)
            continue
        t0 = time.perf_counter()
        rows += (run_step_process(args, _without_steps(child_argv), name, box) if isolate == 'process' else
                 run_step_here(args, name, box))
        print(f'# step {name}: {time.perf_counter() - t0:.1f} s', file=sys.stderr, flush=True)
    text = markdown(rows, header, s)
    print('\n' + text, flush=True)
    _save(args, 'benchmark_gpu.jsonl', '\n'.join(json.dumps(r) for r in rows) + '\n')
    _save(args, 'benchmark_gpu.md', text + '\n')
    return 0


def _without_steps(argv: List[str]) -> List[str]:
    out, skip = [], False
    for a in argv:
        if a == '--steps':
            skip = True
            continue
        if skip and not a.startswith('--'):
            continue
        skip = False
        out.append(a)
    return out


def _version(module: str) -> Optional[str]:
    try:
        return __import__(module).__version__
    except Exception:
        return None


def _save(args, name: str, text: str) -> None:
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(osp.join(args.out_dir, name), 'w') as f:
            f.write(text)


if __name__ == '__main__':
    sys.exit(run_tool(main))
