"""The large depthwise convolution: every implementation against the plain depthwise conv, and its
re-parameterisation."""
import pytest
import torch
import torch.nn.functional as F

from mmrevcol.models.layers.large_kernel import (LargeKernelConv, choose_impl, depthwise_conv2d,
                                                 depthwise_conv2d_multi)


def plain(x, w, b=None):
    kh, kw = w.shape[-2:]
    return F.conv2d(x, w, b, padding=(kh // 2, kw // 2), groups=x.shape[1])


SHAPES = [((13, 3), (9, 14)), ((3, 13), (9, 14)), ((51, 5), (14, 14)), ((7, 7), (5, 3)), ((1, 1), (4, 6)),
          ((15, 15), (11, 8))]


@pytest.mark.parametrize('impl', ['conv', 'fft', 'auto'])
@pytest.mark.parametrize('kernel,size', SHAPES)
def test_matches_plain_conv_fp32(impl, kernel, size):
    torch.manual_seed(0)
    x = torch.randn(2, 6, *size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 1, *kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    out = depthwise_conv2d(x.float(), w.float(), b.float(), impl)
    ref = plain(x, w, b)
    assert out.shape == ref.shape and out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)
    # gradients (float64 through the same path: exact up to round-off)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad((depthwise_conv2d(x, w, b, impl) * g).sum(), (x, w, b))
    ref_grads = torch.autograd.grad((ref * g).sum(), (x, w, b))
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('impl', ['conv', 'fft'])
def test_low_precision_cpu(impl, dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 12)
    w = torch.randn(4, 1, 17, 5) * 0.1
    out = depthwise_conv2d(x.to(dtype), w.to(dtype), None, impl)
    assert out.dtype == dtype
    ref = plain(x.to(dtype).float(), w.to(dtype).float())
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = depthwise_conv2d(x, w, None, impl)
    torch.testing.assert_close(out.float(), plain(x, w), rtol=3e-2, atol=3e-2)


def test_multi_shares_input_and_checks_kernels():
    x = torch.randn(1, 3, 10, 9)
    ws = [torch.randn(3, 1, 9, 3), torch.randn(3, 1, 3, 9), torch.randn(3, 1, 3, 3)]
    outs = depthwise_conv2d_multi(x, ws, impl='fft')
    for o, w in zip(outs, ws):
        torch.testing.assert_close(o, plain(x, w), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='odd'):
        depthwise_conv2d(x, torch.randn(3, 1, 4, 3))
    with pytest.raises(ValueError, match='impl'):
        depthwise_conv2d(x, ws[0], impl='winograd')


def test_auto_choice():
    cpu = torch.device('cpu')
    assert choose_impl(cpu, [(51, 5), (5, 51), (5, 5)]) == 'conv'
    assert choose_impl(cpu, [(51, 51)]) == 'fft'
    assert choose_impl(torch.device('cuda'), [(13, 13)]) == 'conv'


def randomize_bn(module):
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize('decompose', [True, False])
@pytest.mark.parametrize('impl', ['conv', 'fft'])
def test_module_and_deploy(decompose, impl):
    torch.manual_seed(0)
    m = LargeKernelConv(8, 11, 3, decompose=decompose, impl=impl)
    assert m.branch_names == (['tall', 'wide', 'small'] if decompose else ['square', 'small'])
    if decompose:
        assert m.tall.conv.weight.shape == (8, 1, 11, 3) and m.wide.conv.weight.shape == (8, 1, 3, 11)
    randomize_bn(m)
    m.eval()
    x = torch.randn(2, 8, 13, 10)
    # the function, written out from the official definition
    ref = sum(getattr(m, n).bn(plain(x, getattr(m, n).conv.weight)) for n in m.branch_names)
    with torch.no_grad():
        out = m(x)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        m.switch_to_deploy()
        assert m.deployed and set(dict(m.named_parameters())) == {'fused.weight', 'fused.bias'}
        torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-4)
    m.switch_to_deploy()  # idempotent


def test_training_mode_uses_batch_statistics():
    torch.manual_seed(0)
    m = LargeKernelConv(4, 9, 3, impl='fft').train()
    x = torch.randn(2, 4, 12, 12)
    out = m(x)
    ref = sum(torch.nn.functional.batch_norm(plain(x, getattr(m, n).conv.weight), None, None, training=True)
              for n in m.branch_names)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert m.tall.bn.num_batches_tracked.item() == 1
