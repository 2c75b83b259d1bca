"""The RevCol inference fast path (fused oneDNN block ops, folded layer scale, one addcmul per level) computes the
same function as the standard path: against the standard path and against the official reference."""
import copy

import pytest
import torch

from mmrevcol.checkpoint import to_revcol_state_dict
from mmrevcol.models import RevCol
from mmrevcol.models.layers import fused_convnext

ARCH = dict(channels=[8, 16, 24, 32], layers=[1, 2, 2, 1], num_columns=3)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def reduced(**kwargs):
    torch.manual_seed(0)
    model = RevCol(arch=ARCH, **kwargs)
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():  # layer scale 1e-6 would hide the blocks: make every weight matter
            if p.dim() == 1 and p.numel() > 1:
                p.normal_(0, 0.5)
    return model.eval()


@pytest.fixture
def count_fast(monkeypatch):
    calls = []
    original = fused_convnext.fused_block_forward
    monkeypatch.setattr(fused_convnext, '_enabled', True)  # the path under test, also with MMREVCOL_FUSED_CPU=0

    def counting(block, x):
        calls.append(1)
        return original(block, x)

    monkeypatch.setattr(fused_convnext, 'fused_block_forward', counting)
    return calls


def standard_outputs(model, img, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(fused_convnext, '_enabled', False)
        with torch.no_grad():
            return model(img)


@pytest.mark.skipif(not fused_convnext.AVAILABLE, reason='no oneDNN in this torch build')
@pytest.mark.parametrize('size', [(72, 100)])
def test_fast_path_and_deploy_match_standard_path(size, count_fast, monkeypatch):
    model = reduced()
    img = torch.randn(2, 3, *size)
    expected = standard_outputs(model, img, monkeypatch)
    assert not count_fast
    with torch.no_grad():
        fast = model(img)
    num_blocks = sum(ARCH['layers']) * ARCH['num_columns']
    assert len(count_fast) == num_blocks
    deployed = copy.deepcopy(model)
    deployed.switch_to_deploy()
    deployed.switch_to_deploy()  # idempotent
    with torch.no_grad():
        folded = deployed(img)
    assert len(count_fast) == 2 * num_blocks
    folded_standard = standard_outputs(deployed, img, monkeypatch)
    for outs in (fast, folded, folded_standard):
        for a, b in zip(outs, expected):
            assert a.shape == b.shape and a.is_contiguous()
            assert rel_err(a, b) < 1e-5


def test_fast_path_never_runs_with_autograd_or_in_training(count_fast):
    model = reduced()
    img = torch.randn(1, 3, 64, 64)
    outs = model(img)  # eval, grad enabled, parameters require grad
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.train()
    with torch.no_grad():
        model(img)
    assert not count_fast


def test_switch_to_deploy_folds_layer_scale():
    model = reduced()
    before = {k for k in model.state_dict() if k.endswith('.gamma')}
    assert len(before) == sum(ARCH['layers']) * ARCH['num_columns']
    model.switch_to_deploy()
    assert model.deploy
    assert not any(k.endswith('.gamma') for k in model.state_dict())


@pytest.mark.shared
def test_fast_path_reproduces_official_reference(reference):
    ref = reference['reference']
    model = RevCol(arch=ref['arch'], kernel_size=ref['kernel_size'])
    model.load_state_dict(to_revcol_state_dict(reference['checkpoint']), strict=True)
    model.eval().switch_to_deploy()
    with torch.no_grad():
        outs = model(ref['input'])
    for out, expected in zip(outs, ref['outputs']):
        assert rel_err(out, expected) < 1e-4
