"""RevCol at batch 1: the CUDA-graph switch (on a CPU-only machine: a clean no-op that says so) and the fused
up + down of the fusion modules (bit for bit the plain resize + add)."""
import copy
import warnings

import pytest
import torch

from mmrevcol.models import RevCol
from mmrevcol.models.backbones.revcol import UpFusion
from mmrevcol.models.layers import cuda_graphs_enabled, disable_cuda_graphs, enable_cuda_graphs
from mmrevcol.models.layers.cuda_graph import CUDAGraphForward

SMALL = dict(channels=[8, 16, 16, 24], layers=[1, 1, 2, 1], num_columns=3)


@pytest.mark.parametrize('channels_last', [True, False], ids=['channels_last', 'nchw'])
@pytest.mark.parametrize('sizes', [((16, 24), (8, 12)), ((64, 32), (8, 4)), ((15, 24), (8, 12)), ((18, 9), (9, 4))],
                         ids=['x2', 'x8', 'odd-height', 'not-a-multiple'])
def test_up_fusion_add_to_is_the_plain_resize_and_add(sizes, channels_last):
    torch.manual_seed(0)
    up = UpFusion(8, 4)
    (big, small) = sizes
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    target = torch.randn(2, 4, *big).contiguous(memory_format=fmt).requires_grad_(True)
    x = torch.randn(2, 8, *small).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    ref = target + up(x, big)
    out = up.add_to(target, x)
    assert torch.equal(out, ref) and out.stride() == ref.stride()
    g = torch.randn_like(ref)
    grads = torch.autograd.grad((out * g).sum(), [target, x] + list(up.parameters()))
    ref_grads = torch.autograd.grad((ref * g).sum(), [target, x] + list(up.parameters()))
    for a, b in zip(grads, ref_grads):  # the repeat's gradient sums the same terms, maybe in another order
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * b.abs().max().item())


class AddTo(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.up = UpFusion(8, 4)

    def forward(self, target, x):
        return self.up.add_to(target, x)


def test_up_fusion_traced_uses_the_plain_ops():
    target, x = torch.randn(1, 4, 16, 16), torch.randn(1, 8, 8, 8)
    graph = torch.jit.trace(AddTo().eval(), (target, x)).graph
    assert 'upsample_nearest' in str(graph)  # size-dependent branching never enters a trace


def test_revcol_unchanged_by_the_fused_fusion(monkeypatch):
    """The whole backbone, eval and train: the fused path against the plain one (forced by faking a trace)."""
    torch.manual_seed(0)
    model = RevCol(arch=SMALL, drop_path_rate=0.)
    x = torch.randn(2, 3, 64, 96)
    outs = []
    for fused in (True, False):
        if not fused:
            import mmrevcol.models.backbones.revcol as revcol
            monkeypatch.setattr(revcol, '_eager', lambda: False)
        model.zero_grad()
        y = model(x)
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in y).backward()
        outs.append(([o.detach() for o in y], {n: p.grad.clone() for n, p in model.named_parameters()
                                               if p.grad is not None}))
    (o1, g1), (o2, g2) = outs
    for a, b in zip(o1, o2):
        assert torch.equal(a, b)
    for name in g2:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-5, atol=1e-6 * g2[name].abs().max().item())


# ----------------------------------------------------------------------------------------------------------------
def test_cuda_graphs_switch_is_a_clean_noop_without_cuda():
    torch.manual_seed(0)
    model = RevCol(arch=SMALL).eval()
    keys = list(model.state_dict())
    ref = copy.deepcopy(model)
    assert enable_cuda_graphs(model) is model and cuda_graphs_enabled(model)
    assert isinstance(model, RevCol) and list(model.state_dict()) == keys  # nothing registered as a submodule
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), pytest.warns(UserWarning, match='running eagerly \\(inputs on cpu, not CUDA\\)'):
        out = model(x)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('error')  # warned once per reason
        out = model(x)
        expected = ref(x)
    for a, b in zip(out, expected):
        assert torch.equal(a, b)
    assert model.forward.stats == dict(captures=0, replays=0, eager=2)
    disable_cuda_graphs(model)
    assert not cuda_graphs_enabled(model) and 'forward' not in model.__dict__


def test_cuda_graphs_say_why_a_call_runs_eagerly():
    model = RevCol(arch=SMALL)
    graphed = CUDAGraphForward(model, model.forward)
    x = torch.randn(1, 3, 32, 32)
    assert 'keyword' in graphed.fallback_reason((x, ), dict(flag=True))
    assert 'non-tensor' in graphed.fallback_reason((x, 3), {})
    assert 'not CUDA' in graphed.fallback_reason((x, ), {})
    if torch.cuda.is_available():
        x = x.cuda()
        assert 'training mode' in graphed.fallback_reason((x, ), {})
        model.eval()
        assert 'gradients wanted' in graphed.fallback_reason((x, ), {})
        with torch.no_grad():
            assert graphed.fallback_reason((x, ), {}) is None
    with pytest.raises(ValueError, match='max_graphs'):
        enable_cuda_graphs(model, max_graphs=0)
    with pytest.raises(ValueError, match='warmup'):
        enable_cuda_graphs(model, warmup=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_graph_replays_equal_eager():  # runs where a GPU is lent (benchmark_gpu.py measures the speed)
    torch.manual_seed(0)
    model = RevCol(arch=SMALL).cuda().eval()
    model.switch_to_deploy()
    ref = copy.deepcopy(model)
    enable_cuda_graphs(model, max_graphs=1)
    with torch.inference_mode():
        for size in ((64, 64), (64, 64), (64, 96), (64, 64)):
            x = torch.randn(1, 3, *size, device='cuda')
            for a, b in zip(model(x), ref(x)):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert model.forward.stats['captures'] == 3 and model.forward.stats['replays'] == 4  # LRU of one graph
    with torch.no_grad():  # captured under inference_mode, replayed under no_grad: ordinary static buffers
        for a, b in zip(model(x), ref(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
