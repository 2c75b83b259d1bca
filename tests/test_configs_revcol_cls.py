"""configs/revcol_cls/: the official ImageNet-1k recipe, and (with a tiny RevCol) one training step with Mixup/CutMix
and intermediate supervision, the optimizer built from the config, and a prediction."""
import copy
import sys

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

from mmrevcol.models.backbones.revcol import RevCol
from test_configs import CONFIG_DIR, REPO, build_model, load

# size: arch, drop path, gradient clipping, final lr (official configs/revcol_*_1k.yaml; L: B's recipe, paper dpr)
RECIPE = {
    't': ('tiny', 0.1, None, 1e-6),
    's': ('small', 0.3, None, 1e-6),
    'b': ('base', 0.4, 5.0, 1e-8),
    'l': ('large', 0.5, 5.0, 1e-8),
}
TINY = dict(channels=[8, 16, 24, 32], layers=[1, 1, 1, 1], num_columns=4)


def test_every_config_is_tested():
    assert sorted(p.name for p in (CONFIG_DIR / 'revcol_cls').glob('*.py')) == sorted(
        [f'revcol_{s}_in1k.py' for s in RECIPE] + ['revcol_mini_coco_crops.py', 'upernet_revcol_mini_camvid_ft.py'])


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


# ---------------------------------------------------------------------------------------------------------------
# The pre-train -> convert/kernel-pad -> fine-tune flow (tools/pretrain_finetune.sh), reduced: real Runners, a few
# iterations, the flow's own configs and tools.
FLOW_ARCH = dict(channels=[8, 16, 24, 32], layers=[1, 1, 1, 1], num_columns=4)


class SnapshotHook(Hook):
    """The backbone's weights when the first training iteration starts (after every loading step)."""
    priority = 'LOWEST'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == 0:
            model = runner.model.module if hasattr(runner.model, 'module') else runner.model
            self.backbone = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}


def write_crops(root, num=8, classes=('a', 'b', 'c')):
    """A tiny set in coco_crops.py's output layout (random pixels: the flow's plumbing is under test here)."""
    from PIL import Image
    rng = np.random.RandomState(0)
    (root / 'meta').mkdir(parents=True)
    (root / 'train').mkdir()
    lines = []
    for i in range(num):
        name = f'train/{i:04d}.jpg'
        Image.fromarray(rng.randint(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(root / name)
        lines.append(f'{name} {i % len(classes)}')
    (root / 'meta' / 'train.txt').write_text('\n'.join(lines) + '\n')
    (root / 'meta' / 'classes.txt').write_text('\n'.join(classes) + '\n')
    return len(classes)


def no_val(cfg):
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None


def test_pretrain_convert_finetune_flow(tmp_path):
    from mmengine.runner import Runner
    sys.path.insert(0, str(REPO / 'tools'))
    from convert_checkpoint import convert

    # 1. pre-train the classifier (intermediate supervision, reversible, EMA) for 2 iterations
    crops = tmp_path / 'crops'
    num_classes = write_crops(crops)
    cfg = load('revcol_cls/revcol_mini_coco_crops.py')
    cfg.model.backbone.arch = dict(FLOW_ARCH)
    cfg.model.head.update(num_classes=num_classes, in_channels=FLOW_ARCH['channels'][-1])
    cfg.data_preprocessor.num_classes = num_classes
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=str(crops) + '/', classes=str(crops / 'meta' / 'classes.txt'))
    cfg.train_dataloader.update(batch_size=4, num_workers=0)
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    cfg.param_scheduler = []
    no_val(cfg)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.work_dir = str(tmp_path / 'pretrain')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    pretrained_ckpt = tmp_path / 'pretrain' / 'epoch_1.pth'
    ckpt = torch.load(str(pretrained_ckpt), map_location='cpu', weights_only=True)
    assert 'ema_state_dict' in ckpt
    pretrained = {k[len('backbone.'):]: v for k, v in ckpt['state_dict'].items() if k.startswith('backbone.')}
    assert any(k.startswith('decoders.2.') for k in ckpt['state_dict'])  # the heads were trained and saved

    # 2. convert + kernel-pad 3 -> 7 (heads dropped)
    converted = tmp_path / 'revcol_mini_k7.pth'
    meta = convert(str(pretrained_ckpt), str(converted), kernel_size=7)
    assert meta['padded_kernels'] == sum(1 for k in pretrained if k.endswith('depthwise_conv.weight')) > 0

    # 3. fine-tune UPerNet from it: at iteration 0 the backbone holds the pre-trained weights, padded kernels included
    demo = pytest.importorskip('mmrevcol.demo_data').generate(str(tmp_path / 'seg'), num_train=2, num_val=1, size=64,
                                                              verbose=False)
    cfg = load('revcol_cls/upernet_revcol_mini_camvid_ft.py')
    cfg.model.backbone.arch = dict(FLOW_ARCH)
    cfg.model.backbone.init_cfg.checkpoint = str(converted)
    cfg.model.decode_head.update(in_channels=FLOW_ARCH['channels'], channels=16)
    cfg.model.auxiliary_head.update(in_channels=FLOW_ARCH['channels'][2], channels=8)
    cfg.model.data_preprocessor.size = (64, 64)
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=demo, img_suffix='.png')
    ds.pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=False),
                   dict(type='PackSegInputs')]
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1)
    no_val(cfg)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=10)
    cfg.work_dir = str(tmp_path / 'finetune')
    runner = Runner.from_cfg(cfg)
    snap = SnapshotHook()
    runner.register_hook(snap)
    runner.train()
    got = snap.backbone
    assert got.keys() == pretrained.keys()
    for key, src in pretrained.items():
        if key.endswith('depthwise_conv.weight'):
            assert got[key].shape[-1] == 7 and torch.equal(got[key][..., 2:5, 2:5], src), key
            pad = got[key].clone()
            pad[..., 2:5, 2:5] = 0
            assert 0 < pad.abs().max() < 1e-6, key  # N(0, 1e-7) padding
        else:
            assert torch.equal(got[key], src), key
    # the layer-wise decay constructor was used
    lrs = sorted({g['lr'] for g in runner.optim_wrapper.optimizer.param_groups})
    assert len(lrs) > 3


def test_coco_crops_builder(tmp_path):
    """Boxes become crops (with margin, clipped), small/crowd boxes and rare classes are dropped, per-class caps
    hold, and the train/val split is by image."""
    import json
    from PIL import Image
    sys.path.insert(0, str(REPO / 'tools' / 'dataset_converters'))
    from coco_crops import convert
    src = tmp_path / 'coco'
    (src / 'annotations').mkdir(parents=True)
    (src / 'train2017').mkdir()
    images, anns = [], []
    for i in range(8):
        Image.new('RGB', (100, 80), (i * 30, 0, 0)).save(src / 'train2017' / f'{i}.jpg')
        images.append(dict(id=i, file_name=f'{i}.jpg', width=100, height=80))
        anns += [dict(id=10 * i, image_id=i, category_id=1, bbox=[0, 0, 50, 40], iscrowd=0),
                 dict(id=10 * i + 1, image_id=i, category_id=2, bbox=[60, 10, 30, 30], iscrowd=0),
                 dict(id=10 * i + 2, image_id=i, category_id=2, bbox=[5, 5, 10, 10], iscrowd=0),  # too small
                 dict(id=10 * i + 3, image_id=i, category_id=2, bbox=[5, 5, 40, 40], iscrowd=1)]  # crowd
    anns.append(dict(id=999, image_id=0, category_id=3, bbox=[0, 0, 40, 40], iscrowd=0))  # a rare class
    cats = [dict(id=1, name='dog'), dict(id=2, name='cat'), dict(id=3, name='yak')]
    (src / 'annotations' / 'instances_train2017.json').write_text(
        json.dumps(dict(images=images, annotations=anns, categories=cats)))
    out = convert(str(src), str(tmp_path / 'crops'), min_size=24, min_per_class=3, max_per_class=6, margin=0.1,
                  val_every=4)
    assert out['classes'] == ['cat', 'dog'] and out['per_class'] == {'cat': (4, 2), 'dog': (4, 2)}
    lines = (tmp_path / 'crops' / 'meta' / 'val.txt').read_text().split()
    assert lines == ['val/000000000000_0.jpg', '1', 'val/000000000000_1.jpg', '0',  # images 0 and 4: val
                     'val/000000000004_40.jpg', '1', 'val/000000000004_41.jpg', '0']
    with Image.open(tmp_path / 'crops' / 'val' / '000000000000_0.jpg') as im:
        assert im.size == (55, 44)  # 50x40 box + 10% margin each side, clipped at the image's top-left corner
    assert (tmp_path / 'crops' / 'meta' / 'classes.txt').read_text().split() == ['cat', 'dog']
