"""The Triton depthwise kernels (``impl='triton'``) against ``F.conv2d``: outputs, input and weight gradients, in
fp32 / bf16 / fp16, NCHW and channels-last, through Triton's CPU interpreter; ``LargeKernelConv`` and the official
SLaK reference with them; the import paths without Triton; every kernel variant compiled for sm_90 (no GPU needed).

How the interpreter is switched on: Triton fixes a kernel's mode when ``triton.jit`` decorates it (triton 3.8 reads
``TRITON_INTERPRET`` there, not at ``import triton`` and not at launch). :mod:`mmrevcol.models.layers.triton_dwconv`
decorates its kernels lazily, once per mode, reading the variable at each launch; so setting it per test with
``monkeypatch.setenv`` works whatever was imported before (torch, triton, this module), and is undone after.
"""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmrevcol.models.layers import large_kernel, triton_dwconv
from mmrevcol.models.layers.large_kernel import LargeKernelConv, choose_impl, depthwise_conv2d_multi
from mmrevcol.models.layers.triton_dwconv import TritonUnavailableError, depthwise_conv2d_triton, tap_plan

from conftest import REPO
from test_large_kernel import randomize_bn

needs_triton = pytest.mark.skipif(triton_dwconv._triton_import_error() is not None,
                                  reason=f'Triton does not import: {triton_dwconv._triton_import_error()}')


@pytest.fixture
def interpret(monkeypatch):
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    assert triton_dwconv.interpreting()


def plain(x, w, b=None):
    kh, kw = w.shape[-2:]
    return F.conv2d(x, w, b, padding=(kh // 2, kw // 2), groups=x.shape[1])


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


# ----------------------------------------------------------------------------------------------------------------
def test_tap_plan_merges_the_shared_centre():
    offsets, ranges = tap_plan(((7, 3), (3, 7), (3, 3)))
    assert len(offsets) == 2 * 7 * 3 - 3 * 3 == len(set(offsets))  # 2Ks - s², each tap once
    for (kh, kw), (lo, hi) in zip(((7, 3), (3, 7), (3, 3)), ranges):
        assert sorted(offsets[lo:hi]) == sorted((dy, dx) for dy in range(-(kh // 2), kh // 2 + 1)
                                                for dx in range(-(kw // 2), kw // 2 + 1))
    offsets, ranges = tap_plan(((9, 9), (5, 5)))  # not decomposed: the small kernel is a sub-range
    assert len(offsets) == 81 and ranges[0] == (0, 81) and ranges[1][1] - ranges[1][0] == 25
    # no order keeps all three contiguous: each kernel gets its own copy
    offsets, ranges = tap_plan(((5, 1), (1, 5), (3, 3)))
    assert ranges == ((0, 5), (5, 10), (10, 19))
    with pytest.raises(ValueError, match='odd'):
        tap_plan(((4, 3), ))


CASES = {  # name: kernel shapes
    'decomposed': [(7, 3), (3, 7), (3, 3)],
    'strips-K<s': [(3, 5), (5, 3)],
    'square+small': [(7, 7), (3, 3)],
    'single': [(5, 3)],
}


def run_both(x64, ws64, bs64, summed, dtype=torch.float32, channels_last=False):
    """(triton outputs and grads in ``dtype``, float64 reference outputs and grads from the same rounded values)."""
    gen = torch.Generator().manual_seed(1)
    x = x64.to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ws = [w.to(dtype).requires_grad_(True) for w in ws64]
    bs = [b.to(dtype).requires_grad_(True) if b is not None else None for b in bs64]
    out = depthwise_conv2d_triton(x, ws, bs, summed=summed)
    outs = [out] if summed else out
    assert all(o.dtype == dtype and o.shape == x.shape for o in outs)
    assert all(o.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
               for o in outs)
    gs = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in outs]
    sum((o * g.to(dtype)).sum() for o, g in zip(outs, gs)).backward()
    got = dict(out=outs, x=x.grad, w=[w.grad for w in ws], b=[b.grad for b in bs if b is not None])

    xr = x.detach().double().requires_grad_(True)
    wr = [w.detach().double().requires_grad_(True) for w in ws]
    br = [b.detach().double().requires_grad_(True) if b is not None else None for b in bs]
    refs = [plain(xr, w, b) for w, b in zip(wr, br)]
    refs = [sum(refs)] if summed else refs
    sum((o * g.to(dtype).double()).sum() for o, g in zip(refs, gs)).backward()
    ref = dict(out=refs, x=xr.grad, w=[w.grad for w in wr], b=[b.grad for b in br if b is not None])
    return got, ref


def check(got, ref, tol):
    for key in ('out', 'x', 'w', 'b'):
        a, b = got[key], ref[key]
        for i, (u, v) in enumerate(zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b])):
            assert u.dtype == (got['out'][0].dtype if key != 'x' else u.dtype)
            assert rel_err(u, v) <= tol, f'{key}[{i}]: relative error {rel_err(u, v):.2e} > {tol:.0e}'


FP32_CASES = [(case, layout) for case in CASES for layout in ('nchw', )] + [('decomposed', 'channels_last')]


@needs_triton
@pytest.mark.parametrize('summed', [False, True], ids=['separate', 'summed'])
@pytest.mark.parametrize('case,layout', FP32_CASES, ids=[f'{c}-{l}' for c, l in FP32_CASES])
def test_fp32_matches_conv2d(interpret, case, layout, summed):
    """Outputs, input and weight (and bias) gradients within 1e-5 of float64 ``F.conv2d``, relative to scale."""
    torch.manual_seed(0)
    shapes = CASES[case]
    x = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    ws = [torch.randn(6, 1, *s, dtype=torch.float64) for s in shapes]
    bs = [torch.randn(6, dtype=torch.float64) if summed or case == 'single' else None for _ in shapes]
    got, ref = run_both(x, ws, bs, summed, channels_last=layout == 'channels_last')
    check(got, ref, 1e-5)


@needs_triton
@pytest.mark.parametrize('dtype,tol', [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)], ids=['bf16', 'fp16'])
@pytest.mark.parametrize('summed', [False, True], ids=['separate', 'summed'])
def test_low_precision_against_fp32(interpret, dtype, tol, summed):
    """bf16 / fp16 in and out, fp32 accumulation: within one conversion of each stored value from the exact result
    of the same rounded inputs. fp16: 2^-11 relative (round to nearest). bf16: Triton's interpreter converts by
    truncation, 2^-7 relative (compiled kernels round to nearest, 2^-8: benchmark_gpu.py's check step uses 5e-3)."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 10, 8, dtype=torch.float64)
    ws = [torch.randn(4, 1, *s, dtype=torch.float64) for s in CASES['decomposed']]
    got, ref = run_both(x, ws, [None] * 3, summed, dtype=dtype)
    check(got, ref, tol)


@needs_triton
def test_autocast_computes_in_the_autocast_dtype(interpret):
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    w = torch.randn(4, 1, 5, 3, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, = depthwise_conv2d_multi(x, [w], impl='triton')
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and w.grad.dtype == torch.float32
    ref = plain(x.detach().bfloat16().double(), w.detach().bfloat16().double())
    assert rel_err(out, ref) < 1e-2


# ----------------------------------------------------------------------------------------------------------------
def module_pass(m, x):
    x = x.clone().requires_grad_(True)
    out = m(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    return out.detach(), x.grad, grads, {n: b.clone() for n, b in m.named_buffers()}


@needs_triton
@pytest.mark.parametrize('mode', ['train', 'eval', 'norm_eval'])
@pytest.mark.parametrize('decompose', [True, False], ids=['decomposed', 'square'])
def test_large_kernel_conv_matches_conv_impl(interpret, mode, decompose):
    """Training (separate outputs, BN batch statistics, running stats updated alike), eval and frozen BNs in
    training (BNs folded, one summed output): the same function and gradients (BN parameters too) as 'conv'."""
    torch.manual_seed(0)
    ref = LargeKernelConv(6, 7, 3, decompose=decompose, impl='conv')
    randomize_bn(ref)
    mine = LargeKernelConv(6, 7, 3, decompose=decompose, impl='triton')
    mine.load_state_dict(ref.state_dict())
    for m in (ref, mine):
        m.train(mode != 'eval')
        if mode == 'norm_eval':
            for bn in m.modules():
                if isinstance(bn, torch.nn.BatchNorm2d):
                    bn.eval()
    x = torch.randn(2, 6, 9, 10)
    (o1, gx1, gp1, b1), (o2, gx2, gp2, b2) = module_pass(ref, x), module_pass(mine, x)
    assert rel_err(o2, o1) < 1e-5 and rel_err(gx2, gx1) < 1e-5
    assert set(gp1) == set(gp2)
    for name in gp1:
        assert rel_err(gp2[name], gp1[name]) < 1e-5, name
    for name in b1:
        torch.testing.assert_close(b2[name], b1[name], rtol=1e-5, atol=1e-6)
    if mode == 'eval':
        with torch.no_grad():
            mine.switch_to_deploy()
            assert rel_err(mine(x), o1) < 1e-5  # the deployed K×K kernel through Triton, with its bias


# The official SLaK reference, with the Triton kernels selected (eval mode: folded BNs; then deployed K×K).
@needs_triton
@pytest.mark.shared
def test_official_reference_vectors_triton(interpret, tmp_path):
    from test_slak import REFERENCE, check_against_reference
    from conftest import require_shared
    ref = torch.load(require_shared(REFERENCE), weights_only=True)
    model = check_against_reference(tmp_path, ref['checkpoint'], ref, ref['config'], impl='triton')
    assert all(m.impl == 'triton' for m in model.modules() if isinstance(m, LargeKernelConv))


@needs_triton
@pytest.mark.parametrize('case', [1], ids=['k5-small'])  # K < s strips, no small branch; the others: tests above
def test_official_model_written_out_triton(interpret, tmp_path, case):
    from test_slak import CASES as SLAK_CASES
    from test_slak import OfficialSLaK, check_against_reference, randomize, reference_case
    cfg = SLAK_CASES[case]
    official = randomize(OfficialSLaK(cfg['dims'], cfg['depths'], cfg['kernel_size'], cfg['width_factor'],
                                      cfg['Decom']), seed=3).eval()
    x = torch.randn(2, 3, *cfg['size'], generator=torch.Generator().manual_seed(0))
    ref = reference_case(official, x)
    check_against_reference(tmp_path, {'model': official.state_dict(), 'epoch': 299}, ref, cfg, impl='triton')


# ----------------------------------------------------------------------------------------------------------------
def test_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    if triton_dwconv._triton_import_error() is None:
        from triton import knobs
        if knobs.runtime.interpret:
            pytest.skip('the Triton interpreter is switched on programmatically in this process')
    m = LargeKernelConv(4, 5, 3, impl='triton')
    with pytest.raises(TritonUnavailableError, match="impl='triton'.*(CUDA|Triton)"):
        m(torch.randn(1, 4, 8, 8))


def test_auto_never_picks_triton_without_a_gpu_measurement(monkeypatch):
    """'auto' keeps the earlier choices: no rule for Triton until a GPU measured it (docs/slak.md)."""
    assert all(rule.impl != 'triton' for rule in large_kernel.AUTO_RULES)
    monkeypatch.setenv('TRITON_INTERPRET', '1')  # even where the kernels could run
    for device in ('cpu', 'cuda'):
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            for kernels in ([(51, 5), (5, 51), (5, 5)], [(13, 5), (5, 13), (5, 5)], [(51, 51)]):
                assert choose_impl(torch.device(device), kernels, dtype) in ('conv', 'fft')
    assert choose_impl(torch.device('cuda'), [(51, 5), (5, 51), (5, 5)], torch.bfloat16) == 'conv'


def test_rules_pick_triton_only_where_it_runs(monkeypatch):
    rule = large_kernel.AutoRule('cpu', 'triton', 0, (torch.float32, ), source='a test')
    monkeypatch.setattr(large_kernel, 'AUTO_RULES', (rule, ) + large_kernel.AUTO_RULES)
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    expected = 'triton' if triton_dwconv._triton_import_error() is None else 'conv'
    assert choose_impl(torch.device('cpu'), [(7, 3)], torch.float32) == expected
    assert choose_impl(torch.device('cpu'), [(7, 3)], torch.bfloat16) == 'conv'  # dtype not in the rule
    monkeypatch.delenv('TRITON_INTERPRET')
    monkeypatch.setattr(triton_dwconv, '_triton_import_error', lambda: 'ImportError: no triton')
    assert choose_impl(torch.device('cpu'), [(7, 3)], torch.float32) == 'conv'


BLOCK_TRITON = """
import sys
sys.modules['triton'] = None  # as if not installed: import raises ModuleNotFoundError, find_spec returns None
import torch
import mmrevcol
from mmrevcol.models import SLaK
from mmrevcol.models.layers import triton_dwconv
from mmrevcol.models.layers.large_kernel import choose_impl
assert sys.modules['triton'] is None
m = SLaK(arch=dict(dims=[8, 8, 8, 8], depths=[1, 1, 1, 1]), kernel_size=[7, 5, 5, 3, 3], impl='auto')
m(torch.randn(2, 3, 32, 32))
assert choose_impl(torch.device('cuda'), [(51, 5)], torch.bfloat16) == 'conv'
assert 'Triton is not installed' in triton_dwconv.unavailable_reason(torch.device('cuda'))
try:
    SLaK(arch=dict(dims=[8, 8, 8, 8], depths=[1, 1, 1, 1]), impl='triton')(torch.randn(2, 3, 32, 32))
except triton_dwconv.TritonUnavailableError as e:
    print('refused:', e)
"""


def test_imports_and_runs_without_triton():
    """The CPU-only install: no Triton at all. Importing and running SLaK works; impl='triton' says why not."""
    proc = subprocess.run([sys.executable, '-c', BLOCK_TRITON], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, 'TRITON_INTERPRET': '0'})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused: impl='triton': Triton is not installed" in proc.stdout


# ----------------------------------------------------------------------------------------------------------------
def _compile_for_gpu(fn, dtype, constexprs, capability):
    import triton
    from triton.backends.compiler import GPUTarget
    jitted = triton.jit(fn)
    pointers = {'in0', 'in1', 'in2', 'out0', 'out1', 'out2', 'w0', 'w1', 'w2', 'b0', 'b1', 'b2', 'x', 'g0', 'g1', 'g2'}
    signature = {}
    for name in jitted.arg_names:
        if name in constexprs:
            signature[name] = 'constexpr'
        elif name == 'taps':
            signature[name] = '*i32'
        elif name in ('dw0', 'dw1', 'dw2'):
            signature[name] = '*fp32'
        else:
            signature[name] = f'*{dtype}' if name in pointers else 'i32'
    return triton.compile(triton.compiler.ASTSource(jitted, signature, constexprs),
                          target=GPUTarget('cuda', capability, 32), options=dict(num_warps=4))


@needs_triton
def test_every_kernel_variant_compiles_for_gpus(monkeypatch):
    """What the interpreter cannot check: the kernels go through Triton's real compiler (to cubin, with the ptxas
    Triton ships) for sm_90 (H100/H200) and sm_80 (A100), in every mode and dtype, without a GPU."""
    pytest.importorskip('triton.backends.nvidia', reason="Triton's NVIDIA backend is not installed")
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    from mmrevcol.models.layers import _triton_dwconv_kernels as src
    fwd_modes = [dict(MULTI_IN=False, MULTI_OUT=True, FLIP=False, HAS_BIAS=False),  # training forward
                 dict(MULTI_IN=False, MULTI_OUT=False, FLIP=False, HAS_BIAS=True),  # folded / deployed forward
                 dict(MULTI_IN=True, MULTI_OUT=False, FLIP=True, HAS_BIAS=False),  # input grad, separate
                 dict(MULTI_IN=False, MULTI_OUT=False, FLIP=True, HAS_BIAS=False)]  # input grad, summed
    for capability, dtype in ((90, 'fp32'), (90, 'bf16'), (90, 'fp16'), (80, 'bf16')):
        for mode in fwd_modes:
            for nb, blocks in ((3, dict(BC=1, BH=16, BW=64)), (1, dict(BC=32, BH=4, BW=8))):
                kernel = _compile_for_gpu(src.dw_fwd_kernel, dtype, dict(NB=nb, **mode, **blocks), capability)
                assert kernel.asm.get('cubin'), (capability, dtype, mode)
        for multi_g in (True, False):
            kernel = _compile_for_gpu(src.dw_wgrad_kernel, dtype, dict(NB=3, MULTI_G=multi_g, BC=1, BT=8, BP=128),
                                      capability)
            assert kernel.asm.get('cubin'), (capability, dtype, multi_g)


@needs_triton
def test_small_tiles_and_batch_splits(interpret, monkeypatch):
    """Tiles smaller than the map (edges masked in every direction), several channel and tap blocks, one batch
    split per image: what the GPU launch shapes do on real sizes."""
    monkeypatch.setattr(triton_dwconv, '_fwd_blocks', lambda c, h, w, cl, outs: (2, 4, 4))
    monkeypatch.setattr(triton_dwconv, '_wgrad_blocks', lambda c, hw, taps, cl, grads: (2, 8, 16))
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)  # 2 channel blocks, 2 x 2 tiles, 4 tap blocks, 2 splits
    ws = [torch.randn(3, 1, *s, dtype=torch.float64) for s in CASES['decomposed']]
    got, ref = run_both(x, ws, [None] * 3, False)
    check(got, ref, 1e-5)
