"""configs/hiri_vit/: each config follows the paper's recipe, builds, and (with a tiny HIRI-ViT) trains one step and
predicts on a tiny synthetic batch."""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from test_configs import SIZE, build_model, head_in_channels, shrink, train_step_and_predict

import mmrevcol  # noqa: F401
from mmrevcol.models.backbones.hiri_vit import HIRIViT

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs' / 'hiri_vit'
DENSE = sorted(p.name for p in CONFIG_DIR.glob('*.py') if not p.name.startswith('hiri_vit_'))
TINY = dict(channels=[8, 16, 24, 32, 40], depths=[2, 2, 1, 1, 1], expansions=[2, 2, 2, 2, 2],
            num_heads=[0, 0, 0, 2, 2], sr_ratios=[1, 1, 1, 1, 1], stem_channels=8)


def load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / name))


def stage_outputs(backbone_cfg) -> list:
    channels = HIRIViT.parse_arch(backbone_cfg.arch)['channels']
    return [channels[i] for i in backbone_cfg.out_indices]


def test_all_expected_configs_exist():
    assert set(DENSE) == {
        'retinanet_hiri_vit_s_coco.py', 'mask_rcnn_hiri_vit_s_coco.py', 'mask_rcnn_hiri_vit_b_coco.py',
        'cascade_hiri_vit_s_coco.py', 'upernet_hiri_vit_s_ade20k.py', 'upernet_hiri_vit_b_ade20k.py'}


@pytest.mark.parametrize('name', DENSE)
def test_dense_config_recipe(name):
    cfg = load(name)
    assert 'mmrevcol' in cfg.custom_imports['imports'] and cfg.custom_imports['allow_failed_imports'] is False
    backbone = cfg.model.backbone
    assert backbone.type == 'HIRIViT' and backbone.arch == name.split('_')[-2]
    assert tuple(backbone.out_indices) == (1, 2, 3, 4)  # strides 8-64 at twice the usual input
    assert backbone.init_cfg.type == 'Pretrained'
    assert set(backbone) == {'type', 'arch', 'out_indices', 'drop_path_rate', 'norm_eval', 'init_cfg'}
    outs = stage_outputs(backbone)
    places = head_in_channels(cfg.model)
    assert places
    for d, key in places:
        assert list(d[key]) == outs
    if 'auxiliary_head' in cfg.model:
        assert cfg.model.auxiliary_head.in_channels == outs[cfg.model.auxiliary_head.in_index]
    if cfg.default_scope == 'mmdet':
        assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.train_dataloader.batch_size == 2  # x 8 GPUs
        dataset = cfg.train_dataloader.dataset
        train = (dataset.dataset if dataset.type == 'RepeatDataset' else dataset).pipeline
        resize = next(t for t in train if 'Resize' in t.type)
        test_resize = next(t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Resize')
        assert tuple(test_resize.scale) == (2666, 1600)
        if name.startswith('cascade'):
            assert [tuple(s) for s in resize.scale] == [(2666, 960), (2666, 1600)]  # 3x multi-scale
            assert cfg.train_cfg.max_epochs * dataset.times == 36
        else:
            assert tuple(resize.scale) == (2666, 1600) and cfg.train_cfg.max_epochs == 12  # 1x
    else:
        assert cfg.optim_wrapper.optimizer.lr == 6e-5 and cfg.optim_wrapper.optimizer.weight_decay == 0.01
        assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size == 2
        assert cfg.param_scheduler[0].end == 1500


def shrink_hiri(cfg: Config) -> Config:
    cfg = shrink(cfg, arch=TINY)  # tiny arch, no checkpoint, small images, fewer RoIs
    outs = stage_outputs(cfg.model.backbone)
    if 'auxiliary_head' in cfg.model:  # in_index counts the backbone's outputs, not its stages
        cfg.model.auxiliary_head.in_channels = outs[cfg.model.auxiliary_head.in_index]
    return cfg


# The B variants differ from S only in the backbone, which the reduced test replaces: their train step runs under
# `slow`; the fast suite builds them with the real B backbone instead.
@pytest.mark.parametrize('name', [n for n in DENSE if '_s_' in n] + [
    pytest.param(n, marks=pytest.mark.slow) for n in DENSE if '_b_' in n])
def test_dense_config_trains_and_predicts(name):
    model = train_step_and_predict(shrink_hiri(load(name)))
    assert isinstance(model.backbone, HIRIViT)


@pytest.mark.parametrize('name', [n for n in DENSE if '_b_' in n])
def test_b_configs_real_backbone_builds(name):
    backbone = copy.deepcopy(load(name).model.backbone)
    backbone.pop('type')
    backbone.init_cfg = None
    model = HIRIViT(**backbone)
    assert model.channels == HIRIViT.parse_arch('b')['channels'] and model.norm_eval
    assert [getattr(model, f'norm{i}').num_features if i < 3 else getattr(model, f'norm{i}').normalized_shape[0]
            for i in model.out_indices] == stage_outputs(load(name).model.backbone)


# -----------------------------------------------------------------------------------------------------------------
def test_classification_config_recipe():
    cfg = load('hiri_vit_s_in1k_448.py')
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.model.type == 'EMADistillClassifier' and cfg.model.data_preprocessor.type == 'EMADistillDataPreprocessor'
    assert cfg.model.backbone.arch == 's' and cfg.model.head.in_channels == HIRIViT.parse_arch('s')['channels'][-1]
    assert [h.type for h in cfg.custom_hooks] == ['EMAHook', 'EMADistillHook']
    assert cfg.custom_hooks[0].update_buffers
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 1e-3, 0.05)
    assert cfg.train_cfg.max_epochs == 300 and cfg.param_scheduler[0].end == 5
    assert cfg.train_dataloader.batch_size * 8 == 1024
    crop = next(t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomResizedCrop')
    assert crop.scale == 448


def test_classification_config_trains_with_ema_teacher_and_predicts():
    from mmpretrain.structures import DataSample
    cfg = copy.deepcopy(load('hiri_vit_s_in1k_448.py'))
    cfg.model.backbone.arch = TINY
    cfg.model.head.in_channels = TINY['channels'][-1]
    cfg.model.head.num_classes = cfg.model.data_preprocessor.num_classes = 5
    model = build_model(cfg)
    teacher = copy.deepcopy(model)
    model.set_teacher(teacher)
    model.train()
    torch.manual_seed(0)
    batch = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(4)],
                 data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    assert 'mix_source' in data['data_samples'][0]
    loss = model(**data, mode='loss')['loss']
    assert torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(batch, False), mode='predict')
    assert len(results) == 4 and results[0].pred_score.shape == (5, )


# -----------------------------------------------------------------------------------------------------------------
# acceptance runs
def test_camvid_acceptance_config_builds():
    cfg = Config.fromfile(str(CONFIG_DIR / 'acceptance' / 'upernet_hiri_vit_camvid.py'))
    assert cfg.model.backbone.type == 'HIRIViT' and cfg.model.backbone.init_cfg is None
    assert cfg.max_iters == 1200 and cfg.num_classes == 11  # the RevCol run's settings, inherited
    assert cfg.crop_size == (320, 320)
    model = build_model(cfg)  # (its train step is the UPerNet one tested above, with another arch)
    assert model.decode_head.in_channels == cfg.arch['channels'][1:]
    x = torch.randn(1, 3, SIZE, SIZE)
    assert [f.shape[1] for f in model.extract_feat(x)] == cfg.arch['channels'][1:]


@pytest.mark.shared
def test_coco_crops_dataset_and_acceptance_config(tmp_path):
    import sys
    from conftest import SHARED, require_shared
    sys.path.insert(0, str(CONFIG_DIR.parents[1] / 'tools'))
    from coco_box_crops import build
    coco = require_shared(SHARED / 'data' / 'coco_mini')
    counts = build(str(coco / 'annotations' / 'instances_train2017.json'), str(coco / 'train2017'), str(tmp_path))
    assert set(counts['train']) == set(counts['val']) and len(counts['train']) == 4
    assert all(0 < counts['val'][c] < counts['train'][c] for c in counts['train'])

    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(str(CONFIG_DIR / 'acceptance' / 'hiri_vit_ema_distill_coco_crops.py'))
    dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset_cfg.data_root = str(tmp_path)
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == sum(counts['train'].values()) and len(dataset.metainfo['classes']) == cfg.num_classes
    item = dataset[0]
    assert item['inputs'].shape == (3, 128, 128)
    assert [h.type for h in cfg.custom_hooks] == ['EMAHook', 'EMADistillHook']
