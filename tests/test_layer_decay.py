"""RevColLayerDecayOptimizerConstructor (issue #4): official layer-wise / stage-wise lr decay built from a detector
config, no weight decay for 1-D / bias / alpha / gamma, frozen params skipped, wrapped models, AMP wrapper."""
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, init_default_scope
from torch import nn

import mmrevcol  # noqa: F401
from mmrevcol.engine import layer_decay
from mmrevcol.engine.layer_decay import RevColLayerDecayOptimizerConstructor
from mmrevcol.models.backbones.revcol import RevCol

ARCH = dict(channels=[8, 16, 24, 32], layers=[1, 1, 2, 1], num_columns=3)
NUM_IDS = sum(ARCH['layers']) + ARCH['num_columns'] + 1  # 9
BASE_LR, WD, RATE = 1e-3, 0.05, 0.85

DETECTOR_CFG = f"""
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='RevCol', arch={ARCH!r}, kernel_size=3, init_cfg=None),
    neck=dict(in_channels={ARCH['channels']!r}, out_channels=16),
    bbox_head=dict(in_channels=16, feat_channels=16, stacked_convs=1))
"""


def optim_cfg(decay_type='layer_wise', rate=RATE, wrapper='OptimWrapper', **paramwise):
    return dict(type=wrapper, constructor='RevColLayerDecayOptimizerConstructor',
                optimizer=dict(type='AdamW', lr=BASE_LR, betas=(0.9, 0.999), weight_decay=WD),
                paramwise_cfg=dict(decay_rate=rate, decay_type=decay_type, **paramwise))


@pytest.fixture(scope='module')
def detector_cfg(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'retinanet_revcol_tiny.py'
    path.write_text(textwrap.dedent(DETECTOR_CFG))
    return Config.fromfile(str(path))


def build_detector(cfg, **backbone):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    model_cfg = cfg.model.copy()
    model_cfg.backbone = dict(model_cfg.backbone, **backbone)
    return MODELS.build(model_cfg)


@pytest.fixture
def detector(detector_cfg):
    return build_detector(detector_cfg)


def groups_by_param(optimizer):
    out = {}
    for group in optimizer.param_groups:
        for p in group['params']:
            assert id(p) not in out, 'a parameter is in two groups'
            out[id(p)] = group
    return out


def expected_layer_id(name):
    """The official formula (docs/revcol.md), written out independently of RevCol.get_layer_depth."""
    if name.startswith('backbone.stem.'):
        return 0
    if not name.startswith('backbone.'):
        return NUM_IDS - 1
    parts = name.split('.')
    j, level = int(parts[2]), int(parts[4])
    if parts[3] == 'alpha':
        return j + 1
    block = int(parts[6]) if parts[5] == 'blocks' else 0
    return sum(ARCH['layers'][:level]) + block + j + 1


def expect_no_decay(name, param):
    return param.ndim == 1 or name.endswith('.bias') or '.alpha.' in name or name.endswith('.gamma')


def check_groups(model, wrapper, decay_type='layer_wise', rate=RATE):
    """Every trainable parameter in exactly one group with the expected lr, lr_scale and weight decay."""
    by_param = groups_by_param(wrapper.optimizer)
    named = dict(model.named_parameters())
    trainable = {n: p for n, p in named.items() if p.requires_grad}
    assert len(by_param) == len(trainable)
    for name, p in trainable.items():
        group = by_param[id(p)]
        if decay_type == 'layer_wise':
            lid, num = expected_layer_id(name), NUM_IDS
        else:
            num = 6
            lid = 0 if name.startswith('backbone.stem.') else (
                int(name.split('.')[4]) + 1 if name.startswith('backbone.columns.') else 5)
        scale = rate**(num - lid - 1)
        assert group['layer_id'] == lid, name
        assert group['lr_scale'] == pytest.approx(scale, rel=1e-12), name
        assert group['lr'] == pytest.approx(BASE_LR * scale, rel=1e-12), name
        assert group['weight_decay'] == (0. if expect_no_decay(name, p) else WD), name
    # groups keyed by (layer id, decay / no decay): no two groups share a key
    keys = [(g['layer_id'], g['weight_decay'] == 0) for g in wrapper.optimizer.param_groups]
    assert len(keys) == len(set(keys))
    return by_param, named


# ----------------------------------------------------------------------------------------------------------------
def test_registered_in_root_and_resolves_under_downstream_scopes():
    assert OPTIM_WRAPPER_CONSTRUCTORS.get('RevColLayerDecayOptimizerConstructor') is \
        RevColLayerDecayOptimizerConstructor
    for scope in ('mmdet', 'mmseg', 'mmpretrain'):
        init_default_scope(scope)
        model = RevCol(arch=ARCH)
        wrapper = build_optim_wrapper(model, optim_cfg())
        assert isinstance(wrapper, OptimWrapper)


def test_layer_wise_detector(detector, monkeypatch):
    logs = []
    monkeypatch.setattr(layer_decay, 'print_log', lambda msg, *a, **k: logs.append(msg))
    wrapper = build_optim_wrapper(detector, optim_cfg())
    by_param, named = check_groups(detector, wrapper)
    # the anchors of the issue: stem rate^(num-1), last column's last block rate^1, neck and heads 1
    assert by_param[id(named['backbone.stem.0.weight'])]['lr'] == pytest.approx(BASE_LR * RATE**(NUM_IDS - 1))
    last = 'backbone.columns.2.levels.3.blocks.0.pointwise_conv1.weight'
    assert by_param[id(named[last])]['lr'] == pytest.approx(BASE_LR * RATE)
    for name in ('neck.lateral_convs.0.conv.weight', 'bbox_head.retina_cls.weight'):
        assert by_param[id(named[name])]['lr'] == pytest.approx(BASE_LR)
    # weight decay: conv / linear weights yes; alpha (4-D), gamma, norms, biases no
    for name in ('backbone.columns.1.alpha.2', 'backbone.columns.0.levels.0.blocks.0.gamma',
                 'backbone.columns.0.levels.0.blocks.0.norm.weight', 'backbone.stem.0.bias',
                 'neck.fpn_convs.0.conv.bias'):
        assert by_param[id(named[name])]['weight_decay'] == 0., name
    for name in ('backbone.columns.0.levels.0.blocks.0.depthwise_conv.weight',
                 'backbone.columns.2.levels.1.fusion.up.proj.weight', 'bbox_head.retina_reg.weight'):
        assert by_param[id(named[name])]['weight_decay'] == WD, name
    # one table, one row per group
    assert len(logs) == 1
    table = logs[0]
    assert 'layer_wise' in table and f'{NUM_IDS} depth ids' in table
    assert len(table.splitlines()) == 3 + len(wrapper.optimizer.param_groups)
    assert 'layer_0_no_decay' in table and f'layer_{NUM_IDS - 1}_decay' in table


def test_stage_wise_detector(detector):
    wrapper = build_optim_wrapper(detector, optim_cfg('stage_wise'))
    check_groups(detector, wrapper, 'stage_wise')
    assert sorted({g['layer_id'] for g in wrapper.optimizer.param_groups}) == [0, 1, 2, 3, 4, 5]


def test_no_decay_rate_is_plain_adamw(detector):
    wrapper = build_optim_wrapper(detector, optim_cfg(rate=1.0))
    check_groups(detector, wrapper, rate=1.0)
    assert {g['lr'] for g in wrapper.optimizer.param_groups} == {BASE_LR}
    # an empty paramwise_cfg still applies the no-weight-decay rules (does not fall back to model.parameters())
    cfg = optim_cfg()
    cfg.pop('paramwise_cfg')
    wrapper = build_optim_wrapper(detector, cfg)
    check_groups(detector, wrapper, rate=1.0)


def test_frozen_params_are_skipped(detector_cfg):
    model = build_detector(detector_cfg, frozen_stages=1)
    wrapper = build_optim_wrapper(model, optim_cfg())
    by_param, named = check_groups(model, wrapper)
    frozen = [n for n, p in named.items() if not p.requires_grad]
    assert 'backbone.stem.0.weight' in frozen and 'backbone.columns.1.alpha.0' in frozen
    assert 'backbone.columns.2.levels.0.blocks.0.depthwise_conv.weight' in frozen
    assert all(id(named[n]) not in by_param for n in frozen)


class FakeWrapper(nn.Module):
    """Like MMDistributedDataParallel: the real model under ``.module``."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def test_wrapped_model(detector):
    ref = build_optim_wrapper(detector, optim_cfg()).optimizer.param_groups
    for wrapped in (FakeWrapper(detector), FakeWrapper(FakeWrapper(detector))):
        wrapper = build_optim_wrapper(wrapped, optim_cfg())
        check_groups(detector, wrapper)
        got = wrapper.optimizer.param_groups
        assert [(g['layer_id'], g['lr'], g['weight_decay'], len(g['params'])) for g in got] == \
            [(g['layer_id'], g['lr'], g['weight_decay'], len(g['params'])) for g in ref]


def test_ddp_gloo_world_size_1(detector, tmp_path):
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    if not dist.is_available():
        pytest.skip('torch.distributed is not available')
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        ddp = MMDistributedDataParallel(detector)
        wrapper = build_optim_wrapper(ddp, optim_cfg())
        check_groups(detector, wrapper)
    finally:
        dist.destroy_process_group()


def test_model_without_backbone_attribute_and_bare_backbone():
    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(RevCol(arch=ARCH))
            self.head = nn.Linear(32, 10)

    model = Classifier()
    wrapper = build_optim_wrapper(model, optim_cfg())
    named = dict(model.named_parameters())
    by_param = groups_by_param(wrapper.optimizer)
    assert len(by_param) == len(named)
    assert by_param[id(named['encoder.0.stem.0.weight'])]['lr_scale'] == pytest.approx(RATE**(NUM_IDS - 1))
    assert by_param[id(named['head.weight'])]['lr_scale'] == 1.0
    bare = RevCol(arch=ARCH)
    wrapper = build_optim_wrapper(bare, optim_cfg())
    assert len(groups_by_param(wrapper.optimizer)) == len(list(bare.parameters()))


def test_amp_optim_wrapper(detector, monkeypatch):
    # AmpOptimWrapper refuses to be built without an accelerator; the constructor's part does not depend on it.
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
    wrapper = build_optim_wrapper(detector, optim_cfg(wrapper='AmpOptimWrapper'))
    assert isinstance(wrapper, AmpOptimWrapper)
    check_groups(detector, wrapper)


def test_optimizer_steps_and_state_dict_round_trip(detector_cfg):
    model = RevCol(arch=ARCH)
    wrapper = build_optim_wrapper(model, optim_cfg())
    out = model(torch.randn(1, 3, 32, 32))
    wrapper.update_params(sum(o.sum() for o in out))
    state = wrapper.state_dict()
    again = build_optim_wrapper(model, optim_cfg())
    again.load_state_dict(state)
    assert [g['lr'] for g in again.optimizer.param_groups] == [g['lr'] for g in wrapper.optimizer.param_groups]


def test_config_errors():
    model = RevCol(arch=ARCH)
    with pytest.raises(ValueError, match='unknown paramwise_cfg'):
        build_optim_wrapper(model, optim_cfg(layer_decay_rate=0.9))
    with pytest.raises(ValueError, match='decay_type'):
        build_optim_wrapper(model, optim_cfg('block_wise'))
    with pytest.raises(ValueError, match='decay_rate'):
        build_optim_wrapper(model, optim_cfg(rate=1.5))
    with pytest.raises(ValueError, match='lr must be set'):
        build_optim_wrapper(model, dict(constructor='RevColLayerDecayOptimizerConstructor',
                                        optimizer=dict(type='AdamW'), paramwise_cfg=dict(decay_rate=0.9)))
    with pytest.raises(ValueError, match='no RevCol'):
        build_optim_wrapper(nn.Linear(2, 2), optim_cfg())
    two = nn.ModuleDict(dict(a=RevCol(arch=ARCH), b=RevCol(arch=ARCH)))
    with pytest.raises(ValueError, match='several RevCol'):
        build_optim_wrapper(two, optim_cfg())


def test_num_layers_in_config_is_ignored(detector):
    """Configs ported from mmdet/mmseg carry num_layers; the depth structure comes from the built backbone."""
    wrapper = build_optim_wrapper(detector, optim_cfg(num_layers=42))
    check_groups(detector, wrapper)


def test_full_tiny_arch_depth_ids():
    """RevCol-T (built, not run): 10 blocks + 4 columns + 1 = 15 ids, stem 0.85^14, last block 0.85."""
    model = RevCol(arch='tiny')
    wrapper = build_optim_wrapper(model, optim_cfg())
    by_param = groups_by_param(wrapper.optimizer)
    named = dict(model.named_parameters())
    assert by_param[id(named['stem.0.weight'])]['lr_scale'] == pytest.approx(RATE**14)
    assert by_param[id(named['columns.3.levels.3.blocks.1.gamma'])]['lr_scale'] == pytest.approx(RATE)
    assert {g['layer_id'] for g in wrapper.optimizer.param_groups} == set(range(14))
