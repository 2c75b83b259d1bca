"""configs/slak/: parse, match the official recipe, and (with a reduced SLaK) train one step and predict."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import HOOKS, init_default_scope

import mmrevcol  # noqa: F401
from mmrevcol.engine.sparsity import DynamicSparsityHook

from test_configs import SIZE, build_model, head_in_channels, shrink, train_step_and_predict

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs' / 'slak'
DOWNSTREAM = ['cascade_slak_t_coco.py', 'retinanet_slak_t_coco.py', 'upernet_slak_t_ade20k.py',
              'upernet_slak_s_ade20k.py', 'upernet_slak_b_ade20k.py', 'mask2former_slak_t_ade20k.py']
REDUCED = dict(dims=[16, 32, 48, 64], depths=[1, 1, 1, 1])  # width_factor 1.0: stage widths = dims
CHANNELS = {'tiny': [124, 249, 499, 998], 'small': [124, 249, 499, 998], 'base': [166, 332, 665, 1331]}


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / name))


def reduce(cfg: Config) -> Config:
    """test_configs.shrink (tiny images, fewer RoIs, no pretrained file) plus small kernels and width 1."""
    cfg = shrink(cfg, arch=REDUCED, channels=REDUCED['dims'])
    cfg.model.backbone.update(width_factor=1.0, kernel_size=[7, 7, 5, 5, 3])
    return cfg


@pytest.mark.parametrize('name', DOWNSTREAM + ['slak_t_in1k.py'])
def test_config_is_consistent(name):
    cfg = load(name)
    assert 'mmrevcol' in cfg.custom_imports['imports'] and cfg.custom_imports['allow_failed_imports'] is False
    b = cfg.model.backbone
    assert b.type == 'SLaK' and '_delete_' not in b
    assert b.kernel_size == [51, 49, 47, 13, 5] and b.width_factor == 1.3 and b.decompose
    outs = [CHANNELS[b.arch][i] for i in b.out_indices]
    if cfg.default_scope == 'mmpretrain':
        assert cfg.model.head.in_channels == 998 and b.gap_before_final_norm and b.init_cfg is None
        hook = cfg.custom_hooks[0]
        assert hook.type == 'DynamicSparsityHook' and hook.sparsity == 0.4 and hook.init == 'snip'
        return
    for d, key in head_in_channels(cfg.model):
        assert list(d[key]) == outs
    assert b.init_cfg.type == 'Pretrained' and Path(b.init_cfg.checkpoint).name.startswith('SLaK_')
    assert cfg.custom_hooks == [dict(type='DynamicSparsityHook', fixed=True, prefix='backbone.')]


@pytest.mark.parametrize('size,dpr', [('t', 0.4), ('s', 0.3), ('b', 0.4)])
def test_upernet_official_recipe(size, dpr):
    cfg = load(f'upernet_slak_{size}_ade20k.py')
    assert cfg.model.backbone.drop_path_rate == dpr
    ow = cfg.optim_wrapper
    assert ow.type == 'AmpOptimWrapper' and ow.constructor == 'BackboneLayerDecayOptimizerConstructor'
    assert ow.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
    assert ow.paramwise_cfg == dict(decay_rate=0.9, decay_type='stage_wise')
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(512, 512), stride=(341, 341))
    assert cfg.train_cfg.max_iters == 160000 and cfg.model.auxiliary_head.in_index == 2


def test_cascade_official_recipe():
    cfg = load('cascade_slak_t_coco.py')
    heads = cfg.model.roi_head.bbox_head
    assert len(heads) == 3
    for h in heads:  # 4conv1fc (mmdet's base writes it as ConvFCBBoxHead), GIoU on decoded boxes
        assert (h.num_shared_convs, h.num_shared_fcs) == (4, 1) and h.reg_decoded_bbox
        assert h.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
    assert cfg.train_cfg.max_epochs == 36
    assert cfg.optim_wrapper.paramwise_cfg == dict(decay_rate=0.7, decay_type='layer_wise')


# upernet_slak_{s,b} reduce to the same model as upernet_slak_t: their train step is slow-marked
@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.slow) if n in ('upernet_slak_s_ade20k.py', 'upernet_slak_b_ade20k.py') else n
    for n in DOWNSTREAM
])
def test_config_trains_and_predicts(name):
    cfg = reduce(load(name))
    model = train_step_and_predict(cfg)
    hook = HOOKS.build(copy.deepcopy(cfg.custom_hooks[0]))
    hook.setup(model)  # fixed masks from the (here dense, randomly initialised) backbone weights
    assert hook.fixed and all(n.startswith('backbone.') for n in hook.masks)


@pytest.mark.parametrize('name', ['cascade_slak_t_coco.py', 'upernet_slak_t_ade20k.py'])
def test_layer_decay_builds(name):
    from mmengine.optim import build_optim_wrapper
    cfg = reduce(load(name))
    model = build_model(cfg)
    ow = copy.deepcopy(cfg.optim_wrapper)
    ow.type = 'OptimWrapper'
    ow.pop('loss_scale', None)
    wrapper = build_optim_wrapper(model, ow)
    assert max(g['lr'] for g in wrapper.optimizer.param_groups) == pytest.approx(cfg.optim_wrapper.optimizer.lr)


def test_pretraining_config_trains_with_sparsity_and_predicts():
    cfg = load('slak_t_in1k.py')
    cfg.model.backbone.update(arch=dict(dims=[16, 32, 48, 64], depths=[1, 1, 1, 1]), width_factor=1.0,
                              kernel_size=[7, 7, 5, 5, 3])
    cfg.model.head.in_channels = 64
    cfg.model.head.num_classes = 10
    cfg.model.train_cfg = None  # mixup/cutmix need more classes than a 2-image batch shows; not what's tested
    init_default_scope('mmpretrain')
    model = build_model(cfg)
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    batch = dict(inputs=[torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8) for _ in range(2)],
                 data_samples=[DataSample().set_gt_label(i) for i in range(2)])
    hook = HOOKS.build(copy.deepcopy(cfg.custom_hooks[0]))
    assert isinstance(hook, DynamicSparsityHook) and hook.update_interval == 2000
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def batch_loss():
        data = model.data_preprocessor(batch, True)
        return model.parse_losses(model(**data, mode='loss'))[0]

    hook.setup(model, [optimizer], batch_loss)  # SNIP on one batch
    assert hook.density == pytest.approx(0.6, abs=1e-3) and 'head.fc.weight' in hook.masks
    optimizer.zero_grad()
    batch_loss().backward()
    optimizer.step()
    for n, m in hook.masks.items():
        assert torch.all(hook._params[n][~m] == 0)
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(batch, False), mode='predict')
    assert len(results) == 2 and results[0].pred_score.shape == (10, )


def test_camvid_sparse_acceptance_config():
    cfg = load('acceptance/upernet_slak_camvid_sparse.py')
    assert cfg.model.backbone.type == 'SLaK' and cfg.model.backbone.init_cfg is None  # from scratch
    hook = cfg.custom_hooks[0]
    assert hook.type == 'DynamicSparsityHook' and hook.sparsity == 0.4 and not hook.get('fixed', False)
    max_iters = cfg.train_cfg.max_iters
    assert (max_iters - 1) // hook.update_interval >= 10  # prunes/regrows many times
    assert cfg.param_scheduler[-1].end == max_iters and cfg.train_cfg.val_interval < max_iters
    # resume identity needs no model randomness (mmengine does not checkpoint the global RNGs)
    assert cfg.model.decode_head.dropout_ratio == 0 and cfg.model.backbone.drop_path_rate == 0
