"""Every config in configs/: parses, matches the official recipe, and (with a tiny RevCol) trains one step and
predicts on a tiny synthetic batch."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, init_default_scope

import mmrevcol  # noqa: F401
from mmrevcol.models.backbones.hiri_vit import HIRIViT
from mmrevcol.models.backbones.revcol import RevCol
from mmrevcol.models.backbones.revcol_vit import RevColViT
from mmrevcol.models.backbones.slak import SLaK

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'configs'
# Other backbone families live in configs/<family>/ and are tested by tests/test_configs_<family>.py, which
# reuse this module's helpers (tiny_batch, build_model, train_step_and_predict, head_in_channels).
FAMILY_DIRS = ('slak', 'hiri_vit', 'convnext', 'classic', 'revcol_cls', 'revcol_vit')
ALL_CONFIGS = sorted(p.relative_to(CONFIG_DIR).as_posix() for p in CONFIG_DIR.rglob('*.py')
                     if '_base_' not in p.parts and p.relative_to(CONFIG_DIR).parts[0] not in FAMILY_DIRS)
MAIN_CONFIGS = [c for c in ALL_CONFIGS if '/' not in c]
SMALL = dict(channels=[16, 32, 48, 64], layers=[1, 1, 1, 1], num_columns=2)
SIZE = 128


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / name))


def out_channels(backbone_cfg, channels):
    return [channels[i] for i in backbone_cfg.get('out_indices', (0, 1, 2, 3))]


def head_in_channels(model):
    """Where a config feeds the backbone's channels: (dict, key) pairs."""
    places = []
    if 'neck' in model and 'in_channels' in model.neck:
        places.append((model.neck, 'in_channels'))
    for key in ('decode_head', 'panoptic_head'):
        if key in model and isinstance(model[key].get('in_channels'), (list, tuple)):
            places.append((model[key], 'in_channels'))
    return places


# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_config_is_consistent(name):
    cfg = load(name)
    assert cfg.default_scope in ('mmdet', 'mmseg')
    assert 'mmrevcol' in cfg.custom_imports['imports'] and cfg.custom_imports['allow_failed_imports'] is False
    backbone = cfg.model.backbone
    assert backbone.type == 'RevCol'
    channels = RevCol.parse_arch(backbone.arch)['channels']
    outs = out_channels(backbone, channels)
    places = head_in_channels(cfg.model)
    assert places, 'the backbone channels must reach a neck or head'
    for d, key in places:
        assert list(d[key]) == outs, f'{key} {list(d[key])} != backbone outputs {outs}'
    if 'auxiliary_head' in cfg.model:
        aux = cfg.model.auxiliary_head
        assert aux.in_channels == channels[aux.in_index]
    init = backbone.get('init_cfg')
    if name.startswith(('demo/', 'acceptance/')):
        assert init is None, 'demo/acceptance configs train from scratch'
    else:
        assert init.type == 'Pretrained' and Path(init.checkpoint).name.startswith('revcol_')


FRAGMENT_DIR = CONFIG_DIR / '_base_' / 'backbones'
FRAGMENTS = sorted(p.name for p in FRAGMENT_DIR.glob('*.py'))


@pytest.mark.parametrize('fragment', FRAGMENTS)
def test_backbone_fragment_convention(fragment):
    """One convention for every family (docs/contributing.md): ``backbone = dict(type=...)`` and, where heads need
    the widths, ``backbone_channels``; nothing else, no ``_delete_`` inside, no text substitution."""
    code = '\n'.join(line.split('#')[0] for line in (FRAGMENT_DIR / fragment).read_text().splitlines())
    assert '{{' not in code and '_delete_' not in code
    cfg = Config.fromfile(str(FRAGMENT_DIR / fragment))
    assert set(cfg.keys()) == {'backbone', 'backbone_channels'}, sorted(cfg.keys())
    assert isinstance(cfg.backbone.type, str)
    init = cfg.backbone.get('init_cfg')
    if init is not None and not cfg.backbone.type.startswith(('RevCol', 'SLaK', 'HIRIViT', 'ResidualAttentionNet')):
        assert init.get('strict') is True, 'library backbones opt in to the strict loading policy'


@pytest.mark.parametrize('fragment', [f for f in FRAGMENTS if f.startswith(('revcol_', 'slak_', 'hiri_vit_'))])
def test_project_fragment_channels_are_the_archs(fragment):
    """``backbone_channels`` of the project families' fragments are what their outputs carry (the zoo's are
    measured by building the backbone, tests/test_configs_zoo.py)."""
    b = Config.fromfile(str(FRAGMENT_DIR / fragment)).backbone
    if b.type == 'RevCol':
        channels = RevCol.parse_arch(b.arch)['channels']
    elif b.type == 'SLaK':
        channels = [int(d * b.width_factor) for d in SLaK.parse_arch(b.arch)['dims']]
    elif b.type == 'RevColViT':  # isotropic: every level has the embedding width
        channels = [RevColViT.parse_arch(b.arch)['embed_dims']] * 4
    else:
        channels = HIRIViT.parse_arch(b.arch)['channels']
    assert list(Config.fromfile(str(FRAGMENT_DIR / fragment)).backbone_channels) == [channels[i] for i in b.out_indices]


CASCADE = {  # arch, drop path, lr, layer decay, checkpoint (official recipe, docs/revcol.md)
    't': ('tiny', 0.3, 2e-4, 0.85, 'revcol_tiny_1k.pth'),
    's': ('small', 0.4, 2e-4, 0.85, 'revcol_small_1k.pth'),
    'b': ('base', 0.4, 2e-4, 0.9, 'revcol_base_1k.pth'),
    'l': ('large', 0.5, 1e-4, 0.85, 'revcol_large_22k.pth'),
}


@pytest.mark.parametrize('size', sorted(CASCADE))
def test_cascade_official_recipe(size):
    cfg = load(f'cascade_revcol_{size}_coco.py')
    arch, dpr, lr, decay, ckpt = CASCADE[size]
    b = cfg.model.backbone
    assert (b.arch, b.drop_path_rate, b.kernel_size) == (arch, dpr, 3)
    assert b.init_cfg.checkpoint == f'checkpoints/{ckpt}'
    assert cfg.model.neck.out_channels == 256 and cfg.model.neck.num_outs == 5
    heads = cfg.model.roi_head.bbox_head
    assert len(heads) == 3
    for h in heads:
        assert h.type == 'Shared4Conv1FCBBoxHead' and h.reg_decoded_bbox
        assert h.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
    ow = cfg.optim_wrapper
    assert ow.type == 'AmpOptimWrapper' and ow.constructor == 'RevColLayerDecayOptimizerConstructor'
    assert ow.optimizer == dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05)
    assert ow.paramwise_cfg == dict(decay_rate=decay, decay_type='layer_wise')
    assert cfg.train_cfg.max_epochs == 36
    assert cfg.param_scheduler[-1].milestones == [27, 33]
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    names = [t['type'] for t in cfg.train_pipeline]
    assert 'RandomChoice' in names  # DETR-style multi-scale + crop


UPERNET = {  # arch, lr, layer decay, crop
    't': ('tiny', 6e-5, 1.0, 512), 's': ('small', 4e-5, 1.0, 512), 'b': ('base', 4e-5, 1.0, 512),
    'l': ('large', 4e-5, 0.9, 640)
}


@pytest.mark.parametrize('size', sorted(UPERNET))
def test_upernet_official_recipe(size):
    cfg = load(f'upernet_revcol_{size}_ade20k.py')
    arch, lr, decay, crop = UPERNET[size]
    assert cfg.model.backbone.arch == arch
    assert cfg.crop_size == (crop, crop) and cfg.model.test_cfg.mode == 'slide'
    assert cfg.model.auxiliary_head.in_index == 2 and cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4
    ow = cfg.optim_wrapper
    assert ow.type == 'AmpOptimWrapper' and ow.constructor == 'RevColLayerDecayOptimizerConstructor'
    assert ow.optimizer == dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.01)
    assert ow.paramwise_cfg.decay_rate == decay
    warmup, poly = cfg.param_scheduler
    assert warmup.end == 1500 and poly.type == 'PolyLR' and poly.end == 160000
    assert cfg.train_cfg.max_iters == 160000


def test_kernel_padded_variants():
    assert load('cascade_revcol_t_k7_coco.py').model.backbone.kernel_size == 7
    assert load('upernet_revcol_t_k13_ade20k.py').model.backbone.kernel_size == 13


@pytest.mark.parametrize('name', [c for c in MAIN_CONFIGS if c.startswith(('cascade', 'upernet', 'retinanet'))])
def test_optim_wrapper_builds(name):
    """The layer-decay constructor named by the configs builds an optimizer for the (tiny) model."""
    if 'RevColLayerDecayOptimizerConstructor' not in OPTIM_WRAPPER_CONSTRUCTORS.module_dict:
        pytest.skip('RevColLayerDecayOptimizerConstructor not registered yet (mmrevcol/engine/layer_decay.py)')
    from mmengine.optim import build_optim_wrapper
    cfg = shrink(load(name))
    model = build_model(cfg)
    ow_cfg = copy.deepcopy(cfg.optim_wrapper)
    ow_cfg.type = 'OptimWrapper'
    ow_cfg.pop('loss_scale', None)
    wrapper = build_optim_wrapper(model, ow_cfg)
    lrs = {g['lr'] for g in wrapper.optimizer.param_groups}
    assert max(lrs) == pytest.approx(cfg.optim_wrapper.optimizer.lr)
    n_params = sum(len(g['params']) for g in wrapper.optimizer.param_groups)
    assert n_params == len([p for p in model.parameters() if p.requires_grad])


# ----------------------------------------------------------------------------------------------------------------
def shrink(cfg: Config, arch=SMALL, channels=None) -> Config:
    """Tiny RevCol, no pretrained file, small images: same model code, CPU-fast. ``channels``: the backbone's stage
    widths when ``arch`` does not state them as ``channels``."""
    cfg = copy.deepcopy(cfg)
    m = cfg.model
    m.backbone.arch = dict(arch)
    m.backbone.init_cfg = None
    channels = list(channels or arch['channels'])
    outs = out_channels(m.backbone, channels)
    for d, key in head_in_channels(m):
        d[key] = outs
    if 'auxiliary_head' in m:
        m.auxiliary_head.in_channels = channels[m.auxiliary_head.in_index]
    dp = m.get('data_preprocessor', {})
    if cfg.default_scope == 'mmseg' and dp.get('size') is not None:
        dp.size = (SIZE, SIZE)
    for aug in dp.get('batch_augments', None) or []:
        if 'size' in aug:
            aug['size'] = (SIZE, SIZE)
    # fewer RoIs: the 4conv1fc heads on 512 RoIs x 3 stages dominate a CPU step otherwise
    rcnn = m.get('train_cfg', {}).get('rcnn')
    for stage in (rcnn if isinstance(rcnn, list) else [rcnn] if rcnn else []):
        if 'sampler' in stage and 'num' in stage.sampler:
            stage.sampler.num = 32
    if m.get('train_cfg', {}).get('rpn_proposal'):
        m.train_cfg.rpn_proposal.max_per_img = 64
    if m.get('test_cfg', {}).get('rpn'):
        m.test_cfg.rpn.max_per_img = 32
    if 'test_cfg' in m and m.test_cfg.get('mode') == 'slide':
        m.test_cfg.crop_size = (96, 96)
        m.test_cfg.stride = (64, 64)
    return cfg


def build_model(cfg: Config):
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    return model


def num_classes_of(model_cfg) -> int:
    for key in ('roi_head', 'bbox_head', 'panoptic_head', 'decode_head'):
        head = model_cfg.get(key)
        if head is None:
            continue
        if key == 'roi_head':
            head = head.bbox_head[0] if isinstance(head.bbox_head, list) else head.bbox_head
        if key == 'panoptic_head':
            return head.num_things_classes + head.num_stuff_classes
        return head.num_classes
    raise KeyError('num_classes')


def tiny_batch(cfg: Config, batch_size=2):
    torch.manual_seed(0)
    num_classes = num_classes_of(cfg.model)
    if cfg.default_scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        batch = demo_mm_inputs(batch_size=batch_size, image_shapes=(3, SIZE, SIZE), num_items=[3] * batch_size,
                               num_classes=max(num_classes, 2), with_mask=True)  # it can't draw from 1 class
        for sample in batch['data_samples']:
            sample.gt_instances.labels %= num_classes
        return batch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8))
        label = torch.zeros(1, SIZE, SIZE, dtype=torch.long)
        label[:, 20:70, 30:90] = 1 % num_classes
        label[:, 80:120, 10:50] = 2 % num_classes
        meta = dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE), scale_factor=(1., 1.),
                    flip=False)
        samples.append(SegDataSample(gt_sem_seg=PixelData(data=label), metainfo=meta))
    return dict(inputs=inputs, data_samples=samples)


def train_step_and_predict(cfg: Config):
    model = build_model(cfg)
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    data = model.data_preprocessor(tiny_batch(cfg), True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss), log_vars
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), 'no gradient reached the backbone'
    optimizer.step()

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(tiny_batch(cfg, batch_size=1), False)
        results = model(**data, mode='predict')
    assert len(results) == 1
    r = results[0]
    if cfg.default_scope == 'mmdet':
        assert 'pred_instances' in r and r.pred_instances.bboxes.shape[-1] == 4
    else:
        assert r.pred_sem_seg.data.shape[-2:] == (SIZE, SIZE)
    return model


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_config_trains_and_predicts(name):
    train_step_and_predict(shrink(load(name)))


def test_reversible_switch_trains():
    """The documented one-line switch: --cfg-options model.backbone.reversible=True."""
    cfg = shrink(load('cascade_revcol_t_coco.py'))
    cfg.model.backbone.reversible = True
    cfg.model.backbone.arch = dict(SMALL, num_columns=3)
    model = train_step_and_predict(cfg)
    assert model.backbone.reversible
