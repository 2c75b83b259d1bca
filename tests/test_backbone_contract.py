"""One backbone contract (issue #17): every project backbone stands on ``BaseBackbone`` and offers the same knobs
— ``out_indices`` and ``frozen_stages`` validated with the valid range in the error, ``train()`` honouring
``norm_eval`` and frozen stages, ``with_cp`` exact, strict ``init_cfg``, ``get_layer_depth`` in both protocols — and
layer-wise LR decay works for each of them and for mmpretrain's ConvNeXt and EfficientNet."""
import sys
from pathlib import Path

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import mmrevcol  # noqa: F401
from mmrevcol.engine.layer_decay import layer_depth_fn
from mmrevcol.models import HIRIViT, ResidualAttentionNet, RevCol, RevColViT, SLaK
from mmrevcol.models.backbones.base import BaseBackbone

REPO = Path(__file__).resolve().parents[1]

# Reduced archs through the dict form: every backbone at a few thousand parameters, 64x64 inputs.
PROJECT = {
    'RevCol': dict(type='RevCol', arch=dict(channels=[8, 16, 24, 32], layers=[1, 1, 2, 1], num_columns=3)),
    'RevColViT': dict(type='RevColViT', arch=dict(embed_dims=16, layers=[1, 1, 1, 1], num_heads=2, num_columns=3),
                      img_size=64, out_indices=(0, 1, 2, 3)),
    'SLaK': dict(type='SLaK', arch=dict(dims=[8, 16, 24, 32], depths=[1, 1, 3, 1]), kernel_size=[7, 7, 5, 3, 3],
                 width_factor=1.0),
    'HIRIViT': dict(type='HIRIViT', arch=dict(channels=[8, 16, 24, 32, 40], depths=[1, 1, 1, 1, 1],
                                              expansions=[2, 2, 2, 2, 2], num_heads=[0, 0, 0, 2, 2],
                                              sr_ratios=[1, 1, 1, 1, 1], stem_channels=8),
                    out_indices=(1, 2, 3, 4)),
    'ResidualAttentionNet': dict(type='ResidualAttentionNet',
                                 arch=dict(num_modules=(1, 1, 1), stem_channels=8, channels=(16, 32, 48, 64)),
                                 out_indices=(0, 1, 2, 3)),
}
LIBRARY = {
    'ConvNeXt': dict(type='mmpretrain.ConvNeXt', arch=dict(depths=[1, 1, 2, 1], channels=[8, 16, 24, 32])),
    'EfficientNet': dict(type='mmpretrain.EfficientNet', arch='b0', out_indices=(6, )),
}


def build(cfg, **kwargs):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(dict(cfg, **kwargs))
    model.init_weights()
    return model


SIZE = {'HIRIViT': 128}  # five stages: stride 64 needs more than 64 px for batch statistics at the last stage


def image(name, batch=1):
    size = SIZE.get(name, 64)
    return torch.randn(batch, 3, size, size)


def outputs(model, x):
    out = model(x)
    return out if isinstance(out, (tuple, list)) else (out, )


@pytest.mark.parametrize('name', list(PROJECT))
def test_every_project_backbone_stands_on_the_base(name):
    model = build(PROJECT[name])
    assert isinstance(model, BaseBackbone)
    for knob in ('out_indices', 'frozen_stages', 'norm_eval', 'with_cp'):
        assert hasattr(model, knob), knob
    outs = outputs(model, image(name))
    assert len(outs) == len(model.out_indices)
    assert all(o.is_contiguous() for o in outs)


@pytest.mark.parametrize('name', list(PROJECT))
def test_out_indices_and_frozen_stages_errors_name_the_valid_range(name):
    cfg = PROJECT[name]
    num = build(cfg).num_stages
    with pytest.raises(ValueError, match=rf'{name}: out_indices must be ints in \[{-num}, {num - 1}\]'):
        build(cfg, out_indices=(num, ))
    with pytest.raises(ValueError, match=rf'{name}: frozen_stages must be an int in \[-1, {num}\]'):
        build(cfg, frozen_stages=num + 1)
    assert build(cfg, out_indices=-1).out_indices == [num - 1]


@pytest.mark.parametrize('name', list(PROJECT))
def test_frozen_stages_freeze_stem_and_stages_and_stay_in_eval(name):
    model = build(PROJECT[name], frozen_stages=1).train()
    frozen = list(model.frozen_modules())
    assert frozen, 'frozen_stages=1 freezes the stem and stage 0'
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, 'later stages still train'
    outs = outputs(model, image(name, 2))
    sum(o.float().mean() for o in outs).backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())
    if name in ('RevCol', 'RevColViT'):  # level 0's alpha of every column is frozen too
        assert all(not c.alpha[0].requires_grad and c.alpha[1].requires_grad for c in model.columns[1:])
    none = build(PROJECT[name], frozen_stages=-1).train()
    assert all(p.requires_grad for p in none.parameters())


@pytest.mark.parametrize('name', ['SLaK', 'HIRIViT', 'ResidualAttentionNet'])
def test_norm_eval_keeps_batchnorms_in_eval_mode(name):
    model = build(PROJECT[name], norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert build(PROJECT[name]).train().training


@pytest.mark.parametrize('name', list(PROJECT))
def test_with_cp_gives_the_same_gradients(name):
    x = image(name, 2)
    grads = []
    for with_cp in (False, True):
        model = build(PROJECT[name], with_cp=with_cp).train()
        for m in model.modules():  # same batch statistics in both runs; no drop path in these configs
            if isinstance(m, _BatchNorm):
                m.eval()
        outs = outputs(model, x.clone().requires_grad_())
        sum((o.float() ** 2).mean() for o in outs).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        scale = grads[0][n].abs().max().clamp_min(1e-12)
        assert ((grads[0][n] - grads[1][n]).abs().max() / scale) < 1e-4, n


def test_residual_attention_arch_accepts_an_int():
    assert ResidualAttentionNet(arch=56).arch == ResidualAttentionNet(arch='56').arch
    assert ResidualAttentionNet(arch=92).arch['num_modules'] == (1, 2, 3)


@pytest.mark.parametrize('name', list(PROJECT))
def test_get_layer_depth_both_protocols(name):
    model = build(PROJECT[name])
    num = model.num_layer_ids('layer_wise')
    names = [n for n, _ in model.named_parameters()]
    depths = [model.get_layer_depth(f'backbone.{n}', 'backbone.')[0] for n in names]
    assert all(0 <= d < num for d in depths) and len(set(depths)) >= 3
    assert depths[0] == 0
    assert model.get_layer_depth('neck.conv.weight', 'backbone.') == (num - 1, num)
    # mmpretrain's protocol: positional (param_name, prefix), no decay_type
    assert model.get_layer_depth(f'backbone.{names[-1]}', 'backbone.') == \
        model.get_layer_depth(f'backbone.{names[-1]}', 'backbone.', 'layer_wise')
    with pytest.raises(ValueError, match='decay_type must be one of'):
        model.get_layer_depth(names[0], '', 'per_block')


def decay_model(backbone_cfg):
    """A backbone inside a classifier (``backbone.`` prefix, a head outside it)."""
    init_default_scope('mmpretrain')
    return MODELS.build(dict(type='ImageClassifier', backbone=backbone_cfg, neck=dict(type='GlobalAveragePooling'),
                             head=dict(type='LinearClsHead', num_classes=3, in_channels=8,
                                       loss=dict(type='CrossEntropyLoss'))))


def last_channels(model) -> int:
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        return outputs(model.backbone, x)[-1].shape[1]


@pytest.mark.parametrize('name', list(PROJECT) + list(LIBRARY))
def test_layer_decay_for_every_backbone_of_the_zoo(name):
    cfg = dict(PROJECT.get(name) or LIBRARY[name])
    model = decay_model(cfg)
    model.head.fc = nn.Linear(last_channels(model), 3)
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='BackboneLayerDecayOptimizerConstructor',
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(decay_rate=0.8, decay_type='layer_wise')))
    scales = {round(g['lr_scale'], 12) for g in wrapper.optimizer.param_groups}
    assert len(scales) >= 2
    head_groups = [g for g in wrapper.optimizer.param_groups
                   if any(p is model.head.fc.weight for p in g['params'])]
    assert head_groups[0]['lr_scale'] == 1.0
    stem_scale = min(scales)
    assert stem_scale < 1.0
    covered = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    assert covered == {id(p) for p in model.parameters() if p.requires_grad}


@pytest.mark.parametrize('name', ['RevCol', 'RevColViT', 'SLaK', 'HIRIViT'])
def test_stage_wise_decay_where_defined(name):
    model = build(PROJECT[name])
    fn = layer_depth_fn(model)
    ids = {fn(n, '', 'stage_wise')[0] for n, _ in model.named_parameters()}
    assert len(ids) >= 3


def test_library_backbone_without_depth_gets_one_error_naming_it():
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(type='mmpretrain.ShuffleNetV2', widen_factor=0.5))
    with pytest.raises(ValueError, match='the backbone ShuffleNetV2 has no get_layer_depth'):
        layer_depth_fn(model)
    convnext = MODELS.build(LIBRARY['ConvNeXt'])
    with pytest.raises(ValueError, match="ConvNeXt defines layer-wise depths only"):
        layer_depth_fn(convnext)('stages.0.0.gamma', '', 'stage_wise')


# --------------------------------------------------------------------------------------------------------------
# RevColViT: the contract of RevCol (functional alpha clamp, export)
def test_revcol_vit_forward_does_not_write_its_parameters():
    model = build(PROJECT['RevColViT']).eval()
    with torch.no_grad():
        model.columns[1].alpha[0].zero_()  # would be clamped in place by the old forward
    before = {n: p.clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_revcol_vit_export_round_trip(tmp_path):
    sys.path.insert(0, str(REPO / 'tools' / 'deploy'))
    from export import AsTuple, compare, export
    model = build(PROJECT['RevColViT']).eval()
    x = torch.randn(1, 3, 64, 64)
    run = export(model, x, 'export', str(tmp_path / 'revcol_vit.pt2'))
    for shape in ((1, 3, 64, 64), (2, 3, 80, 96)):
        y = torch.randn(*shape)
        with torch.no_grad():
            eager = AsTuple(model)(y)
        diffs = compare(eager, run(y))
        assert len(diffs) == 4 and max(rel for _, rel in diffs) < 1e-4, diffs
    program = torch.export.load(str(tmp_path / 'revcol_vit.pt2'))
    targets = {str(node.target) for node in program.graph.nodes if node.op == 'call_function'}
    assert not any(t.endswith('_.default') or 'copy_' in t for t in targets), targets


def test_reversible_revcol_vit_frozen_stages_and_layer_decay_together():
    model = build(PROJECT['RevColViT'], reversible=True, frozen_stages=2, drop_path_rate=0.1).train()
    outs = outputs(model, torch.randn(2, 3, 64, 64))
    sum(o.mean() for o in outs).backward()
    assert all(p.grad is None for m in model.frozen_modules() for p in m.parameters())
    assert model.columns[-1].levels[3].blocks[0].mlp[0].weight.grad is not None
    assert isinstance(model, RevColViT) and isinstance(RevCol(), BaseBackbone) and issubclass(SLaK, BaseBackbone)
    assert issubclass(HIRIViT, BaseBackbone)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
@pytest.mark.parametrize('name', list(PROJECT))
def test_registered_for_the_three_toolboxes(scope, name):
    if scope != 'mmpretrain':
        pytest.importorskip(scope)
    init_default_scope(scope)
    registry = {'mmdet': 'mmdet.registry', 'mmseg': 'mmseg.registry', 'mmpretrain': 'mmpretrain.registry'}[scope]
    models = __import__(registry, fromlist=['MODELS']).MODELS
    assert type(models.build(PROJECT[name])).__name__ == name


@pytest.mark.parametrize('name', list(PROJECT))
def test_every_gradient_arrives_in_its_parameters_layout(name):
    """DDP copies (and warns about) every gradient whose strides differ from its parameter's: a backbone stores
    each weight in the layout autograd gives its gradient (channels-last where its input is)."""
    model = build(PROJECT[name]).train()
    incoming = {}
    for n, p in model.named_parameters():
        p.register_hook(lambda g, n=n: incoming.__setitem__(n, g.stride()))
    outs = outputs(model, image(name, 2))
    sum((o.float() ** 2).mean() for o in outs).backward()
    mismatched = {n: (p.stride(), incoming[n]) for n, p in model.named_parameters()
                  if n in incoming and p.stride() != incoming[n]}
    assert not mismatched, mismatched
