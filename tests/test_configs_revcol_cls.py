"""configs/revcol_cls/: the official ImageNet-1k recipe, and (with a tiny RevCol) one training step with Mixup/CutMix
and intermediate supervision, the optimizer built from the config, and a prediction."""
import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

from mmrevcol.models.backbones.revcol import RevCol
from test_configs import CONFIG_DIR, build_model, load

# size: arch, drop path, gradient clipping, final lr (official configs/revcol_*_1k.yaml; L: B's recipe, paper dpr)
RECIPE = {
    't': ('tiny', 0.1, None, 1e-6),
    's': ('small', 0.3, None, 1e-6),
    'b': ('base', 0.4, 5.0, 1e-8),
    'l': ('large', 0.5, 5.0, 1e-8),
}
TINY = dict(channels=[8, 16, 24, 32], layers=[1, 1, 1, 1], num_columns=4)


def test_every_config_is_tested():
    assert sorted(p.name for p in (CONFIG_DIR / 'revcol_cls').glob('*.py')) == [
        f'revcol_{s}_in1k.py' for s in sorted(RECIPE)]


@pytest.mark.parametrize('size', sorted(RECIPE))
def test_official_recipe(size):
    cfg = load(f'revcol_cls/revcol_{size}_in1k.py')
    arch, dpr, clip, eta_min = RECIPE[size]
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports == dict(imports=['mmrevcol'], allow_failed_imports=False)
    m = cfg.model
    assert m.type == 'RevColClassifier' and m.intermediate_supervision
    assert (m.bce_coef, m.ce_coef) == (3.0, 0.7)
    assert m.backbone.arch == arch and m.backbone.drop_path_rate == dpr and m.backbone.reversible
    assert m.head.in_channels == RevCol.parse_arch(arch)['channels'][-1] and m.head.num_classes == 1000
    assert m.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    assert m.train_cfg.augments == [dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]
    ow = cfg.optim_wrapper
    assert ow.type == 'AmpOptimWrapper' and ow.optimizer.type == 'AdamW'
    assert ow.optimizer.lr == 1e-3 and ow.optimizer.weight_decay == 0.05 and cfg.auto_scale_lr.base_batch_size == 1024
    assert ow.get('clip_grad', {}) == ({} if clip is None else dict(max_norm=clip))
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == 20 and warmup.start_factor == pytest.approx(1e-2)
    assert cosine.type == 'CosineAnnealingLR' and cosine.eta_min == eta_min and cosine.begin == 20
    assert cfg.train_cfg.max_epochs == 300 and cfg.train_dataloader.batch_size == 128
    assert dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL') in cfg.custom_hooks
    names = [t['type'] for t in cfg.train_pipeline]
    assert 'RandAugment' in names and 'RandomErasing' in names


def shrink(cfg):
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.arch = dict(TINY)
    cfg.model.backbone.init_cfg = None
    cfg.model.head.in_channels = TINY['channels'][-1]
    cfg.model.head.num_classes = 5
    cfg.model.data_preprocessor = dict(cfg.data_preprocessor, num_classes=5)
    return cfg


@pytest.mark.parametrize('size', ['t', 'b'])
def test_config_trains_and_predicts(size):
    cfg = shrink(load(f'revcol_cls/revcol_{size}_in1k.py'))
    model = build_model(cfg)
    ow_cfg = copy.deepcopy(cfg.optim_wrapper)
    ow_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs CUDA
    ow_cfg.pop('loss_scale')
    wrapper = build_optim_wrapper(model, ow_cfg)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    assert decay[id(named['backbone.columns.1.alpha.0'])] == 0
    assert decay[id(named['backbone.columns.1.levels.0.blocks.0.gamma'])] == 0
    assert decay[id(named['backbone.columns.1.levels.0.blocks.0.pointwise_conv1.weight'])] == 0.05

    torch.manual_seed(0)
    inputs = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(4)]
    samples = [DataSample().set_gt_label(i % 5) for i in range(4)]
    model.train()
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
    assert data['data_samples'][0].gt_score.shape == (5, )  # Mixup/CutMix soft targets
    log = model.train_step(dict(inputs=inputs, data_samples=samples), wrapper)
    assert {'loss_cls_col1', 'loss_cls_col4', 'loss_rec_col3'} <= set(log) and torch.isfinite(log['loss'])
    model.eval()
    with torch.no_grad():
        preds = model.val_step(dict(inputs=inputs[:1], data_samples=samples[:1]))
    assert preds[0].pred_score.shape == (5, )
