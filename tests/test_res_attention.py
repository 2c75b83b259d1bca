"""ResidualAttentionNet: structure, the paper's sizes, attention kinds, freezing, strict loading, layer depths."""
import pytest
import torch
from mmengine.registry import MODELS, init_default_scope
from torch import nn

import mmrevcol  # noqa: F401
from mmrevcol.checkpoint import CheckpointMismatchError
from mmrevcol.models.backbones.res_attention import (AttentionModule, PreActBottleneck, ResidualAttentionNet,
                                                     attention_activation)

TINY = dict(num_modules=(1, 1, 1), stem_channels=8, channels=(16, 32, 64, 128), num_last_units=1)
PAPER = {'56': (31.9e6, 6.2e9), '92': (51.3e6, 10.4e9)}  # params / FLOPs at 224 with the 1000-way classifier


def tiny(**kwargs):
    torch.manual_seed(0)
    model = ResidualAttentionNet(arch=dict(TINY), **kwargs)
    model.init_weights()
    return model


def test_outputs_strides_channels_contiguous():
    model = tiny(out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 96, 128))
    assert [o.shape[1] for o in outs] == list(TINY['channels'])
    assert [o.shape[-2:] for o in outs] == [(96 // s, 128 // s) for s in (4, 8, 16, 32)]
    assert all(o.is_contiguous() for o in outs)
    assert (outs[-1] >= 0).all(), 'the last stage ends with the final BN-ReLU'


def test_odd_input_sizes():
    """Max-pool down / bilinear up to explicit sizes: odd maps come back to their size."""
    model = tiny(out_indices=(0, 3)).eval()
    with torch.no_grad():
        a, b = model(torch.randn(1, 3, 100, 76))
    assert a.shape[-2:] == (25, 19) and b.shape[-2:] == (4, 3)


def test_arch_by_name_and_errors():
    assert ResidualAttentionNet.parse_arch('attention-92')['num_modules'] == (1, 2, 3)
    assert ResidualAttentionNet.parse_arch('Attention56')['num_modules'] == (1, 1, 1)
    with pytest.raises(ValueError, match='Unknown ResidualAttentionNet arch'):
        ResidualAttentionNet(arch='128')
    with pytest.raises(ValueError, match='unknown'):
        ResidualAttentionNet(arch=dict(TINY, depth=3))
    with pytest.raises(ValueError, match='attention'):
        ResidualAttentionNet(arch=dict(TINY), attention='soft')


def test_module_structure_follows_the_paper():
    """Attention-56: p=1, t=2, r=1; masks pool 3/2/1 times with 2r units at the bottom and skips between."""
    model = ResidualAttentionNet('56')
    modules = [m for m in model.modules() if isinstance(m, AttentionModule)]
    assert len(modules) == 3
    for m, pools in zip(modules, (3, 2, 1)):
        assert len(m.pre) == 1 and len(m.trunk) == 2 and len(m.post) == 1
        assert [len(d) for d in m.down] == [1] * (pools - 1) + [2]
        assert len(m.skips) == len(m.up) == pools - 1
    assert [sum(isinstance(b, AttentionModule) for b in s) for s in ResidualAttentionNet('92').stages] == [1, 2, 3, 0]
    unit = PreActBottleneck(64, 256, stride=2)
    assert unit.conv1.out_channels == 64 and unit.conv2.stride == (2, 2) and unit.downsample is not None


def test_attention_residual_learning():
    """H = (1 + M) * T: a zero mask logit gives M = 0.5 (mixed), so H = post(1.5 * T)."""
    torch.manual_seed(0)
    m = AttentionModule(16, num_downsamples=2).eval()
    nn.init.zeros_(m.mask_head[-1].weight)
    x = torch.randn(2, 16, 16, 16)
    with torch.no_grad():
        pre = m.pre(x)
        assert torch.allclose(m.mask(pre), torch.full_like(pre, 0.5))
        torch.testing.assert_close(m(x), m.post(1.5 * m.trunk(pre)))


@pytest.mark.parametrize('kind', ['mixed', 'channel', 'spatial'])
def test_attention_kinds(kind):
    torch.manual_seed(0)
    logits = torch.randn(2, 8, 5, 6) * 3 + 1
    mask = attention_activation(logits, kind)
    if kind == 'mixed':
        torch.testing.assert_close(mask, torch.sigmoid(logits))
    elif kind == 'channel':
        torch.testing.assert_close(mask.norm(dim=1), torch.ones(2, 5, 6))
    else:
        # standardised per channel before the sigmoid: each map's logits have mean 0, so the median mask ~ 0.5
        pre = torch.logit(mask)
        torch.testing.assert_close(pre.mean(dim=(2, 3)), torch.zeros(2, 8), atol=1e-4, rtol=0)
        torch.testing.assert_close(pre.std(dim=(2, 3)), torch.ones(2, 8), atol=1e-3, rtol=0)
    model = tiny(attention=kind).eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 64, 64))[0]).all()


def test_params_match_the_paper():
    for arch, (params, _) in PAPER.items():
        model = ResidualAttentionNet(arch)
        n = sum(p.numel() for p in model.parameters()) + 2048 * 1000 + 1000  # + the paper's classifier
        assert abs(n - params) / params < 0.05, (arch, n)


@pytest.mark.slow
@pytest.mark.parametrize('arch', sorted(PAPER))
def test_flops_match_the_paper(arch):
    """mmengine's counter (as tools/analysis/get_flops.py) on the paper's classification network at 224."""
    from mmengine.analysis import get_model_complexity_info
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(type='ImageClassifier', backbone=dict(type='ResidualAttentionNet', arch=arch),
                              neck=dict(type='GlobalAveragePooling'),
                              head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048))).eval()

    class Tensor(nn.Module):

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x, mode='tensor')

    info = get_model_complexity_info(Tensor(model), inputs=(torch.zeros(1, 3, 224, 224), ), show_table=False,
                                     show_arch=False)
    params, flops = PAPER[arch]
    assert abs(info['flops'] - flops) / flops < 0.05, info['flops']
    assert abs(info['params'] - params) / params < 0.05, info['params']


def test_frozen_stages_and_norm_eval():
    model = tiny(frozen_stages=2, norm_eval=True)
    model.train()
    for name, p in model.named_parameters():
        frozen = name.startswith(('stem.', 'stages.0.', 'stages.1.'))
        assert p.requires_grad is not frozen, name
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    model = tiny(frozen_stages=0)
    model.train()
    assert not model.stem.training and model.stages[0].training
    assert not any(p.requires_grad for p in model.stem.parameters())
    with pytest.raises(ValueError, match='frozen_stages'):
        tiny(frozen_stages=5)


def test_gradient_checkpointing_same_result():
    x = torch.randn(2, 3, 64, 64)
    outs, grads = [], []
    for with_cp in (False, True):
        model = tiny(with_cp=with_cp, out_indices=(1, 3))
        model.train()
        out = model(x)
        sum(o.sum() for o in out).backward()
        outs.append(out)
        grads.append(model.stem[0].weight.grad.clone())
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(grads[0], grads[1])


def test_pretrained_loads_strictly(tmp_path):
    src = tiny(out_indices=(0, 1, 2, 3))
    for p in src.parameters():
        p.data.normal_()
    # an mmpretrain classifier checkpoint: backbone.* plus the head
    state = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(10, 128)
    torch.save({'state_dict': state}, tmp_path / 'cls.pth')
    dst = ResidualAttentionNet(arch=dict(TINY), out_indices=(0, 1, 2, 3),
                               init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'cls.pth'),
                                             prefix='backbone.'))
    dst.init_weights()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)

    other = ResidualAttentionNet(arch=dict(TINY, channels=(16, 32, 64, 256)),
                                 init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'cls.pth')))
    with pytest.raises(CheckpointMismatchError, match='shape mismatch'):
        other.init_weights()


def test_layer_depth():
    model = tiny()
    num = model.num_layer_ids()
    assert num == sum(len(s) for s in model.stages) + 2
    assert model.get_layer_depth('backbone.stem.0.weight', 'backbone.') == (0, num)
    assert model.get_layer_depth('backbone.stages.0.0.conv1.weight', 'backbone.') == (1, num)
    assert model.get_layer_depth('backbone.stages.0.1.mask_head.2.weight', 'backbone.') == (2, num)
    assert model.get_layer_depth('backbone.stages.1.0.norm1.weight', 'backbone.') == (3, num)
    assert model.get_layer_depth('backbone.norm_out.weight', 'backbone.') == (num - 1, num)
    assert model.get_layer_depth('decode_head.conv_seg.weight', 'backbone.') == (num - 1, num)
    depths = [model.get_layer_depth(n)[0] for n, _ in model.named_parameters()]
    assert depths == sorted(depths)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_registered_for_all_toolboxes(scope):
    init_default_scope(scope)
    model = MODELS.build(dict(type='ResidualAttentionNet', arch=dict(TINY)))
    assert isinstance(model, ResidualAttentionNet)
