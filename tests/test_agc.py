"""Adaptive Gradient Clipping: same result as timm's reference on the same gradients, classifier excluded, wired into
mmengine's OptimWrapper / AmpOptimWrapper (clip after unscaling) and the Runner."""
import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from timm.utils import adaptive_clip_grad
from torch import nn

import mmrevcol  # noqa: F401
from mmrevcol.engine.agc import AGCAmpOptimWrapper, AGCOptimWrapper, adaptive_clip_grad_, unitwise_norm


class Net(nn.Module):
    """Conv + BN + linear classifier under ``head.fc`` (mmpretrain / timm naming)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
        self.head = nn.Module()
        self.head.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.head.fc(self.backbone(x))


def with_grads(scale=100.0, seed=0):
    torch.manual_seed(seed)
    model = Net()
    loss = model(torch.randn(4, 3, 9, 9)).pow(2).sum() * scale  # large gradients: most units get clipped
    loss.backward()
    with torch.no_grad():
        model.backbone[0].weight[0].zero_()  # a zero unit: the eps floor decides its bound
        model.backbone[0].weight.grad[1].mul_(1e-4)  # a unit far below the bound: untouched
    return model


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_unitwise_norm():
    w = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(unitwise_norm(w).flatten(), w.flatten(1).norm(dim=1))
    b = torch.randn(6)
    torch.testing.assert_close(unitwise_norm(b), b.norm())


@pytest.mark.parametrize('clip', [0.01, 0.16])
def test_matches_timm(clip):
    a, b = with_grads(), with_grads()
    n = adaptive_clip_grad_(a.parameters(), clip=clip, eps=1e-3)
    adaptive_clip_grad(b.parameters(), clip_factor=clip, eps=1e-3)
    ga, gb = grads(a), grads(b)
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-6, atol=0, msg=k)
    assert n > 0
    # the bound holds unit-wise after clipping
    for p in a.parameters():
        bound = unitwise_norm(p.detach()).clamp(min=1e-3) * clip
        assert (unitwise_norm(p.grad) <= bound * (1 + 1e-5)).all()
    ref = grads(with_grads())
    torch.testing.assert_close(ga['backbone.0.weight'][1], ref['backbone.0.weight'][1])  # small unit untouched
    assert not torch.equal(ga['backbone.0.weight'][0], ref['backbone.0.weight'][0])  # zero unit: eps floor


def _wrapper(model, **kwargs):
    cfg = dict(type='AGCOptimWrapper', optimizer=dict(type='SGD', lr=0.0), **kwargs)
    wrapper = build_optim_wrapper(model, cfg)
    wrapper.initialize_count_status(model, 0, 1)  # what mmengine's Runner does before the first step
    return wrapper


def test_optim_wrapper_excludes_the_classifier_like_the_paper():
    model, ref = with_grads(), with_grads()
    wrapper = _wrapper(model, clip=0.01)
    assert isinstance(wrapper, AGCOptimWrapper)
    assert wrapper.agc_excluded_names == ['head.fc.weight', 'head.fc.bias']
    before = grads(ref)
    wrapper.step()
    params = [p for n, p in ref.named_parameters() if not n.startswith('head.fc.')]
    adaptive_clip_grad(params, clip_factor=0.01, eps=1e-3)
    for k, g in grads(model).items():
        torch.testing.assert_close(g, ref.get_parameter(k).grad, rtol=1e-6, atol=0, msg=k)
    torch.testing.assert_close(model.head.fc.weight.grad, before['head.fc.weight'])


def test_exclude_patterns_and_plain_clip_after():
    model = with_grads()
    wrapper = _wrapper(model, clip=0.01, exclude=(r'^(?!backbone\.)', ), clip_grad=dict(max_norm=1e-4))
    assert wrapper.agc_excluded_names == ['head.fc.weight', 'head.fc.bias']
    wrapper.step()
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert total <= 1e-4 * (1 + 1e-4)  # clip_grad ran (after AGC)
    # exclude=() clips everything, classifier included
    model, ref = with_grads(), with_grads()
    _wrapper(model, clip=0.01, exclude=()).step()
    adaptive_clip_grad(ref.parameters(), clip_factor=0.01)
    torch.testing.assert_close(model.head.fc.weight.grad, ref.head.fc.weight.grad, rtol=1e-6, atol=0)


def test_unbound_wrapper_refuses_to_guess():
    model = with_grads()
    wrapper = build_optim_wrapper(model, dict(type='AGCOptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
    with pytest.raises(RuntimeError, match='bind_model'):
        wrapper.step()
    with pytest.raises(ValueError, match='clip'):
        build_optim_wrapper(model, dict(type='AGCOptimWrapper', clip=0.0, optimizer=dict(type='SGD', lr=0.1)))


def test_amp_wrapper_clips_unscaled_gradients(monkeypatch):
    """AGC on the gradients divided by the loss scale: the same result as clipping the unscaled loss's."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
    if not torch.cuda.is_available():
        # AmpOptimWrapper refuses to build without an accelerator; torch's GradScaler itself runs on CPU
        monkeypatch.setattr(amp_module, 'is_cuda_available', lambda: True)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.manual_seed(0)
    model = Net().to(device)
    ref = copy.deepcopy(model)
    wrapper = build_optim_wrapper(model, dict(type='AGCAmpOptimWrapper', clip=0.01, loss_scale=1024.0,
                                              optimizer=dict(type='SGD', lr=1.0)))
    assert isinstance(wrapper, AGCAmpOptimWrapper)
    wrapper.loss_scaler = torch.amp.GradScaler(device, init_scale=1024.0)
    wrapper.initialize_count_status(model, 0, 1)
    x = torch.randn(4, 3, 9, 9, device=device)
    wrapper.update_params(model(x).pow(2).sum() * 100)
    ref(x).pow(2).sum().mul(100).backward()
    params = [p for n, p in ref.named_parameters() if not n.startswith('head.fc.')]
    adaptive_clip_grad(params, clip_factor=0.01)
    with torch.no_grad():
        for p in ref.parameters():
            p -= p.grad
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=n)


def test_runner_binds_the_model(tmp_path):
    """In mmengine's Runner the wrapper learns the parameter names by itself (initialize_count_status)."""
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class ToyModel(BaseModel):

        def __init__(self):
            super().__init__()
            self.net = Net()

        def forward(self, inputs, labels=None, mode='tensor'):
            out = self.net(inputs)  # default_collate stacked them
            if mode == 'loss':
                return dict(loss=out.pow(2).mean() * 1e3)
            return out

    data = [dict(inputs=torch.randn(3, 9, 9)) for _ in range(4)]
    runner = Runner(model=ToyModel(), work_dir=str(tmp_path),
                    train_dataloader=dict(dataset=data, sampler=dict(type='DefaultSampler', shuffle=False),
                                          batch_size=2, collate_fn=dict(type='default_collate')),
                    optim_wrapper=dict(type='AGCOptimWrapper', clip=0.01, optimizer=dict(type='SGD', lr=0.1)),
                    train_cfg=dict(by_epoch=False, max_iters=2), default_hooks=dict(checkpoint=None),
                    default_scope='mmengine')
    runner.train()
    assert runner.optim_wrapper.agc_excluded_names == ['net.head.fc.weight', 'net.head.fc.bias']
    assert runner.message_hub.get_scalar('train/agc_clipped_params').current() > 0
