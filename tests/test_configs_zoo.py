"""The backbone-zoo configs (configs/convnext/, configs/classic/): they parse, keep the recipe of the RevCol-T config
they derive from (only the backbone differs), build without network access, and with a reduced backbone train one
step on CPU and predict."""
import copy
import functools
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from test_configs import SIZE, build_model, head_in_channels, shrink, train_step_and_predict

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'configs'
ZOO = sorted(p.relative_to(CONFIG_DIR).as_posix() for d in ('convnext', 'classic')
             for p in (CONFIG_DIR / d).glob('*.py'))
# family config -> the RevCol-T config whose recipe it keeps
RECIPES = {'cascade': 'cascade_revcol_t_coco.py', 'upernet': 'upernet_revcol_t_ade20k.py',
           'retinanet': 'retinanet_revcol_t_coco.py', 'mask2former': 'mask2former_revcol_t_ade20k.py'}
TINY_RESATT = dict(num_modules=(1, 1, 1), stem_channels=8, channels=(16, 32, 64, 128), num_last_units=1)
# the same classes, CPU-small; no checkpoint, no download
REDUCED = {
    'ResidualAttentionNet': dict(arch=TINY_RESATT),
    'mmpretrain.ConvNeXt': dict(arch=dict(depths=[1, 1, 1, 1], channels=[16, 32, 48, 64])),
    'mmpretrain.ShuffleNetV1': dict(widen_factor=0.5),
    'mmpretrain.ShuffleNetV2': dict(widen_factor=0.5),
    'mmpretrain.EfficientNet': dict(),  # b0 is the smallest
    'semnasnet_100': dict(model_name='semnasnet_050'),
    'dm_nfnet_f0': dict(model_name='test_nfnet'),  # timm's tiny NormFreeNet (same blocks)
}


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / name))


@functools.lru_cache(maxsize=None)
def load_ref(name: str) -> Config:
    return load(name)  # read-only use


def family(name: str) -> str:
    return Path(name).name.split('_')[0]


def backbone_channels(backbone_cfg) -> list:
    """Output channels of a backbone config, from a forward pass (timm/mmpretrain know them, we don't repeat)."""
    model = build_model(Config(dict(default_scope='mmdet', model=backbone_cfg)))
    model.eval()
    with torch.no_grad():
        return [o.shape[1] for o in model(torch.zeros(1, 3, 64, 64))]


def shrink_zoo(cfg: Config) -> Config:
    """test_configs.shrink (small images, fewer RoIs, small slide windows), then a reduced backbone of the same class
    and head channels from what it outputs."""
    backbone = copy.deepcopy(cfg.model.backbone)
    cfg = shrink(cfg, arch=dict(channels=[1] * 8))  # its RevCol arch/channels are replaced below
    key = backbone.get('model_name', backbone.type)
    backbone.update(REDUCED[key], init_cfg=None)
    if 'drop_path_rate' in backbone:
        backbone.drop_path_rate = 0.0
    cfg.model.backbone = backbone
    channels = backbone_channels(backbone)
    for d, k in head_in_channels(cfg.model):
        d[k] = channels
    if 'auxiliary_head' in cfg.model:
        cfg.model.auxiliary_head.in_channels = channels[cfg.model.auxiliary_head.in_index]
    return cfg


# ----------------------------------------------------------------------------------------------------------------
def test_every_family_has_configs():
    assert {'convnext/cascade_convnext_t_coco.py', 'convnext/upernet_convnext_t_ade20k.py',
            'convnext/retinanet_convnext_t_coco.py', 'convnext/mask2former_convnext_t_ade20k.py'} <= set(ZOO)
    for net in ('resattnet56', 'shufflenet_v1', 'shufflenet_v2', 'efficientnet_b0', 'mnasnet_a1', 'nfnet_f0'):
        assert f'classic/retinanet_{net}_coco.py' in ZOO and f'classic/upernet_{net}_ade20k.py' in ZOO


def _strip(d, drop):
    return {k: v for k, v in d.items() if k not in drop}


@pytest.mark.parametrize('name', ZOO)
def test_recipe_is_the_revcol_t_one(name):
    """Everything but the backbone (and what follows from it: channels, the optimizer's depth map) is identical;
    the channels reaching the heads are the backbone's."""
    cfg, ref = load(name), load_ref(RECIPES[family(name)])
    assert cfg.default_scope == ref.default_scope
    assert 'mmrevcol' in cfg.custom_imports['imports'] and cfg.custom_imports['allow_failed_imports'] is False
    assert cfg.model.backbone.type != 'RevCol'
    for key in ('train_dataloader', 'val_dataloader', 'train_cfg', 'param_scheduler', 'auto_scale_lr'):
        assert cfg.get(key) == ref.get(key), key
    drop = {'backbone', 'neck', 'decode_head', 'auxiliary_head'}
    assert _strip(cfg.model, drop) == _strip(ref.model, drop)
    for part in ('neck', 'decode_head', 'auxiliary_head'):
        if part in ref.model:
            assert _strip(cfg.model[part], {'in_channels', 'in_index'}) == _strip(ref.model[part],
                                                                                 {'in_channels', 'in_index'})
    ow, ref_ow = cfg.optim_wrapper, ref.optim_wrapper
    assert ow.optimizer == ref_ow.optimizer
    assert ow.type.endswith(ref_ow.type)  # OptimWrapper / AmpOptimWrapper, AGC-prefixed for NFNet
    if name.startswith('convnext/'):
        # ConvNeXt gets the same layer-decay rule through the toolbox's ConvNeXt constructor
        assert cfg.model.backbone.drop_path_rate == ref.model.backbone.drop_path_rate
        if 'constructor' in ref_ow:
            assert ow.constructor == 'LearningRateDecayOptimizerConstructor'
            assert ow.paramwise_cfg.decay_rate == ref_ow.paramwise_cfg.decay_rate
            assert ow.paramwise_cfg.decay_type == ref_ow.paramwise_cfg.decay_type
        else:
            assert ow.paramwise_cfg == ref_ow.paramwise_cfg
    if 'nfnet' in name:
        assert ow.type.startswith('AGC') and ow.clip > 0
    check_channels_reach_the_heads(cfg)


# The zoo's fragments (library and classic backbones, built here at full size); the project families' fragments
# (RevCol, SLaK, HIRI-ViT) are checked against their arch tables by test_configs.py.
FRAGMENTS = sorted(p.name for p in (CONFIG_DIR / '_base_' / 'backbones').glob('*.py')
                   if not p.name.startswith(('revcol_', 'slak_', 'hiri_vit_')))


@pytest.mark.parametrize('fragment', FRAGMENTS)
def test_fragment_declares_what_the_backbone_outputs(fragment):
    """``backbone_channels`` of each fragment are the full-size backbone's output channels; building it attempts no
    download (timm: pretrained=False)."""
    cfg = Config.fromfile(str(CONFIG_DIR / '_base_' / 'backbones' / fragment))
    if cfg.backbone.type == 'mmpretrain.TIMMBackbone':
        assert cfg.backbone.pretrained is False
    b = copy.deepcopy(cfg.backbone)
    b.init_cfg = None
    assert backbone_channels(b) == list(cfg.backbone_channels)


def check_channels_reach_the_heads(cfg):
    """The heads get the fragment's declared channels of the outputs the config selects."""
    fragment = Config.fromfile(str(CONFIG_DIR / '_base_' / 'backbones' / f'{_fragment_of(cfg)}.py'))
    indices = list(fragment.backbone.out_indices)
    channels = [fragment.backbone_channels[indices.index(i)] for i in cfg.model.backbone.out_indices]
    for d, key in head_in_channels(cfg.model):
        assert list(d[key]) == channels, key
    if 'auxiliary_head' in cfg.model:
        aux = cfg.model.auxiliary_head
        assert aux.in_channels == channels[aux.in_index]
        assert list(cfg.model.decode_head.in_index) == list(range(len(channels)))


def _fragment_of(cfg) -> str:
    b = cfg.model.backbone
    key = b.get('model_name', b.type)
    return {'ResidualAttentionNet': 'res_attention_56', 'mmpretrain.ConvNeXt': 'convnext_t',
            'mmpretrain.ShuffleNetV1': 'shufflenet_v1', 'mmpretrain.ShuffleNetV2': 'shufflenet_v2',
            'mmpretrain.EfficientNet': 'efficientnet_b0', 'semnasnet_100': 'mnasnet_a1',
            'dm_nfnet_f0': 'nfnet_f0'}[key]


# one train step per kind of backbone provider here (mmpretrain, timm through TIMMBackbone, mmrevcol; cheap configs
# on CPU); every other config in the slow suite (`-m slow`)
FAST = {'convnext/upernet_convnext_t_ade20k.py', 'classic/retinanet_resattnet56_coco.py',
        'classic/retinanet_shufflenet_v1_coco.py', 'classic/retinanet_nfnet_f0_coco.py'}


@pytest.mark.parametrize('name', [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in ZOO])
def test_config_trains_and_predicts(name):
    cfg = shrink_zoo(load(name))
    assert cfg.model.backbone.init_cfg is None
    train_step_and_predict(cfg)


def test_layer_decay_constructor_builds_for_convnext():
    """mmdet's / mmseg's ConvNeXt layer-decay constructor, as the ConvNeXt configs name it, groups the reduced
    model's parameters with the RevCol-T decay rate."""
    from mmengine.optim import build_optim_wrapper
    for name in ('convnext/cascade_convnext_t_coco.py', 'convnext/upernet_convnext_t_ade20k.py'):
        cfg = shrink_zoo(load(name))
        model = build_model(cfg)
        ow = copy.deepcopy(cfg.optim_wrapper)
        ow.type = 'OptimWrapper'
        ow.pop('loss_scale', None)
        wrapper = build_optim_wrapper(model, ow)
        lrs = sorted({g['lr'] for g in wrapper.optimizer.param_groups})
        base = cfg.optim_wrapper.optimizer.lr
        assert lrs[-1] == pytest.approx(base)
        rate = cfg.optim_wrapper.paramwise_cfg.decay_rate
        if rate != 1.0:
            assert lrs[0] == pytest.approx(base * rate ** (cfg.optim_wrapper.paramwise_cfg.num_layers + 1))


assert SIZE <= 128  # the tiny batches of test_configs
