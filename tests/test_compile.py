"""torch.compile of RevCol: two compiled training steps (reversible and not, static shapes) equal eager, and
compiled inference equals eager. Compiling takes minutes on a small CPU, hence ``slow``."""
import copy

import pytest
import torch

from mmrevcol.models import RevCol

ARCH = dict(channels=[8, 16, 24, 32], layers=[1, 1, 1, 1], num_columns=3)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def model_pair(**kwargs):
    torch.manual_seed(0)
    model = RevCol(arch=ARCH, **kwargs)
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():  # layer scale 1e-6 would hide the blocks: make every weight matter
            if p.dim() == 1 and p.numel() > 1:
                p.normal_(0, 0.5)
    return model, copy.deepcopy(model)


def train(model, params, img, weights, steps=2):
    opt = torch.optim.SGD(params, lr=0.1)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = sum((o * w).sum() for o, w in zip(model(img), weights))
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return losses


@pytest.mark.slow
@pytest.mark.parametrize('reversible', [False, True])
def test_compiled_training_two_steps_equals_eager(reversible):
    eager, other = model_pair(reversible=reversible, drop_path_rate=0.)
    compiled = torch.compile(other)
    img = torch.randn(2, 3, 64, 64)
    weights = [torch.randn(c, 64 // s, 64 // s, generator=torch.Generator().manual_seed(c))
               for c, s in zip(ARCH['channels'], (4, 8, 16, 32))]
    expected = train(eager.train(), eager.parameters(), img, weights)
    got = train(compiled.train(), other.parameters(), img, weights)
    for a, b in zip(got, expected):
        assert rel_err(a, b) < 1e-4
    for (name, a), b in zip(other.named_parameters(), eager.parameters()):
        assert rel_err(a, b) < 1e-4, name


@pytest.mark.slow
def test_compiled_inference_equals_eager():
    eager, other = model_pair()
    other.switch_to_deploy()
    compiled = torch.compile(other.eval())
    img = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = eager.eval()(img)
        got = compiled(img)
    for a, b in zip(got, expected):
        assert a.is_contiguous()
        assert rel_err(a, b) < 1e-4
