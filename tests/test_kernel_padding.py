"""Kernel padding (paper appendix D.3.1): pad_kernel(s), the init_cfg path, KernelPaddingHook (load_from, resume),
and 2-iteration mmdet / mmseg training runs with load_from + KernelPaddingHook + layer-wise lr decay."""
import re
import textwrap
from collections import OrderedDict

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

import mmrevcol  # noqa: F401
from mmrevcol.checkpoint import CheckpointMismatchError, prepare_state_dict, to_revcol_state_dict
from mmrevcol.engine.kernel_padding import KernelPaddingHook, depthwise_kernel_size, pad_kernel, pad_kernels
from mmrevcol.models.backbones.revcol import RevCol

TINY = dict(channels=[8, 16, 24, 32], layers=[1, 1, 2, 1], num_columns=2)
REF_ARCH = dict(channels=[16, 32, 48, 64], layers=[1, 1, 2, 1], num_columns=3)
DW = re.compile(r'blocks\.\d+\.depthwise_conv\.weight$')

# mmrevcol -> official key renames (inverse of mmrevcol.checkpoint._RENAMES), to write official-layout files.
_TO_OFFICIAL = [
    (r'^columns\.(\d+)\.alpha\.(\d)$', r'subnet\1.alpha\2'),
    (r'^columns\.(\d+)\.levels\.(\d)\.', r'subnet\1.level\2.'),
    (r'\.fusion\.up\.proj\.', '.fusion.up.channel_reschedule.0.'),
    (r'\.fusion\.up\.norm\.', '.fusion.up.channel_reschedule.1.'),
    (r'\.depthwise_conv\.', '.dwconv.'),
    (r'\.pointwise_conv1\.', '.pwconv1.'),
    (r'\.pointwise_conv2\.', '.pwconv2.'),
]


def to_official_key(key: str) -> str:
    for pattern, repl in _TO_OFFICIAL:
        key = re.sub(pattern, repl, key)
    return key


def random_revcol(arch=TINY, kernel_size=3, seed=0) -> RevCol:
    """A RevCol whose every parameter is random (so each weight matters), in eval mode."""
    torch.manual_seed(seed)
    model = RevCol(arch=arch, kernel_size=kernel_size)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.alpha.' in name:
                p.uniform_(0.3, 0.7)
            elif name.endswith('.gamma'):
                p.uniform_(0.2, 0.5)
            elif p.ndim == 1 and 'norm' in name and name.endswith('weight') or name.startswith('stem.1.weight'):
                p.uniform_(0.5, 1.5)
            else:
                p.uniform_(-0.3, 0.3)
    return model.eval()


def write_official_checkpoint(path, model: RevCol, layout='classification'):
    """Save ``model`` like an official checkpoint: classification (``model``, ``module.`` prefixes, first-column
    alphas, head keys) or detection (``state_dict`` with ``backbone.`` prefixes and neck keys)."""
    official = OrderedDict((to_official_key(k), v.clone()) for k, v in model.state_dict().items())
    for level, c in enumerate(model.channels):
        official[f'subnet0.alpha{level}'] = torch.full((1, c, 1, 1), 0.5)  # official first column has alphas
    if layout == 'classification':
        weights = OrderedDict((f'module.{k}', v) for k, v in official.items())
        weights['module.cls_blocks.0.weight'] = torch.randn(10, model.channels[-1])
        ckpt = {'model': weights, 'epoch': 299}
    else:
        weights = OrderedDict((f'backbone.{k}', v) for k, v in official.items())
        weights['neck.lateral_convs.0.conv.weight'] = torch.randn(4, model.channels[0], 1, 1)
        ckpt = {'state_dict': weights, 'meta': {}}
    torch.save(ckpt, str(path))
    return path


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def padding_entries(padded: torch.Tensor, k0: int) -> torch.Tensor:
    k = padded.shape[-1]
    p = (k - k0) // 2
    mask = torch.ones(k, k, dtype=torch.bool)
    mask[p:p + k0, p:p + k0] = False
    return padded[..., mask].flatten()


def check_padded(padded_sd, source_sd, k0=3):
    """Centre == checkpoint exactly; the new entries ~ N(0, 1e-7); every other tensor unchanged."""
    noise = []
    for key, src in source_sd.items():
        got = padded_sd[key]
        if DW.search(key):
            k = got.shape[-1]
            p = (k - k0) // 2
            assert torch.equal(got[..., p:p + k0, p:p + k0], src), key
            noise.append(padding_entries(got, k0))
        else:
            assert torch.equal(got, src), key
    noise = torch.cat(noise).double()
    assert 0.5e-7 < noise.std().item() < 2e-7
    assert noise.abs().max().item() < 1e-6
    return noise


# ----------------------------------------------------------------------------------------------------------------
def test_pad_kernel_centre_noise_and_seed():
    w = torch.randn(256, 1, 3, 3)
    g = torch.Generator().manual_seed(0)
    out = pad_kernel(w, 7, generator=g)
    assert out.shape == (256, 1, 7, 7) and out.dtype == w.dtype
    assert torch.equal(out[..., 2:5, 2:5], w)
    noise = padding_entries(out, 3).double()
    assert 0.5e-7 < noise.std().item() < 2e-7 and abs(noise.mean().item()) < 2e-8
    again = pad_kernel(w, 7, generator=torch.Generator().manual_seed(0))
    other = pad_kernel(w, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and not torch.equal(out, other)
    assert torch.equal(pad_kernel(w, 3), w)
    half = pad_kernel(w.half(), 7, generator=torch.Generator().manual_seed(0))  # fp16 checkpoints: noise kept
    assert half.dtype == torch.float32 and torch.equal(half[..., 2:5, 2:5], w.half().float())
    assert 0.5e-7 < padding_entries(half, 3).double().std().item() < 2e-7


@pytest.mark.parametrize('k0,k,match', [(4, 7, 'odd'), (3, 6, 'odd'), (7, 3, 'larger than the model')])
def test_pad_kernel_errors(k0, k, match):
    with pytest.raises(ValueError, match=match):
        pad_kernel(torch.randn(4, 1, k0, k0), k)


def test_pad_kernels_seeded_and_noop():
    sd = random_revcol().state_dict()
    a, n = pad_kernels(sd, 7, seed=3)
    b, _ = pad_kernels(sd, 7, seed=3)
    c, _ = pad_kernels(sd, 7, seed=4)
    assert n == sum(1 for k in sd if DW.search(k)) == 10
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if DW.search(k))
    check_padded(a, sd)
    same, n = pad_kernels(a, 7)  # already the model's size (e.g. a resumed checkpoint): nothing to do
    assert n == 0 and all(same[k] is a[k] for k in a)
    assert depthwise_kernel_size(a) == 7 and depthwise_kernel_size({'x': torch.zeros(1)}) is None


def test_init_cfg_padding_synthetic(tmp_path):
    """Runs without ../shared: official classification layout -> k=7 RevCol via init_cfg, same function."""
    src = random_revcol(seed=1)
    path = write_official_checkpoint(tmp_path / 'official.pth', src)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = src(x)
    model = RevCol(arch=TINY, kernel_size=7, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval()
    check_padded(model.state_dict(), src.state_dict())
    with torch.no_grad():
        out = model(x)
    for o, r in zip(out, ref):
        assert rel_err(o, r) < 1e-4
    # seeded: a second model gets the same padding
    again = RevCol(arch=TINY, kernel_size=7, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    again.init_weights()
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize('ckpt_k,model_k,match', [(7, 3, 'larger than the model'), (7, 5, 'larger than the model')])
def test_init_cfg_larger_checkpoint_kernel_is_an_error(tmp_path, ckpt_k, model_k, match):
    path = write_official_checkpoint(tmp_path / 'k7.pth', random_revcol(kernel_size=ckpt_k))
    model = RevCol(arch=TINY, kernel_size=model_k, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ValueError, match=match):
        model.init_weights()


def test_even_checkpoint_kernel_is_an_error():
    sd = random_revcol().state_dict()
    sd = {k: (torch.randn(v.shape[0], 1, 4, 4) if DW.search(k) else v) for k, v in sd.items()}
    with pytest.raises(ValueError, match='odd'):
        prepare_state_dict(RevCol(arch=TINY, kernel_size=7), {'state_dict': sd})


@pytest.mark.shared
@pytest.mark.parametrize('k', [7, 13])
def test_reference_checkpoint_padded(reference, tmp_path, k):
    """The official-code checkpoint: k=7 / k=13 models compute the k=3 function (1e-4 relative)."""
    path = tmp_path / 'official.pth'
    torch.save(reference['checkpoint'], str(path))
    source = to_revcol_state_dict(reference['checkpoint'])
    x = reference['reference']['input']
    models = {}
    for size in (3, k):
        m = RevCol(arch=REF_ARCH, kernel_size=size, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
        m.init_weights()
        models[size] = m.eval()
    with torch.no_grad():
        ref, out = models[3](x), models[k](x)
    for o, r, official in zip(out, ref, reference['reference']['outputs']):
        assert rel_err(r, official) < 1e-4  # the k=3 port is the official function
        assert rel_err(o, r) < 1e-4
    check_padded(models[k].state_dict(), source)
    m2 = RevCol(arch=REF_ARCH, kernel_size=k, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    m2.init_weights()
    assert all(torch.equal(v, m2.state_dict()[n]) for n, v in models[k].state_dict().items())


# ------------------------------------------------------------------------------------------- KernelPaddingHook
def detector_like_checkpoint(model: RevCol):
    sd = OrderedDict((f'backbone.{k}', v.clone()) for k, v in model.state_dict().items())
    sd['neck.conv.weight'] = torch.randn(4, 4, 3, 3)  # a 3x3 kernel outside the backbone: never padded
    return {'state_dict': sd, 'meta': {'iter': 0}}


class Detectorish(torch.nn.Module):
    """A RevCol backbone and a neck with a 3x3 conv, named like a detector's."""

    def __init__(self, kernel_size=7):
        super().__init__()
        self.backbone = RevCol(arch=TINY, kernel_size=kernel_size)
        self.neck = torch.nn.Module()
        self.neck.conv = torch.nn.Conv2d(4, 4, 3, bias=False)


def through_hook(ckpt, kernel_size=7, mode='load_from', hook=None):
    """What the Runner does on load: the hook edits the loaded checkpoint in after_load_checkpoint."""
    from types import SimpleNamespace
    hook = hook or KernelPaddingHook(mode=mode)
    hook.after_load_checkpoint(SimpleNamespace(model=Detectorish(kernel_size)), ckpt)
    return ckpt


def test_hook_pads_mmrevcol_layout_like_init_cfg():
    src = random_revcol()
    ckpt = detector_like_checkpoint(src)
    neck = ckpt['state_dict']['neck.conv.weight']
    through_hook(ckpt)
    sd = ckpt['state_dict']
    assert sd['neck.conv.weight'] is neck
    backbone = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    check_padded(backbone, src.state_dict())
    # same noise as the init_cfg / converter path for the same seed
    expected = prepare_state_dict(RevCol(arch=TINY, kernel_size=7), {'state_dict': src.state_dict()})
    assert all(torch.equal(backbone[k], v) for k, v in expected.items())


@pytest.mark.parametrize('layout', ['classification', 'detection'])
def test_hook_converts_official_layouts(tmp_path, layout):
    from mmengine.runner.checkpoint import _load_checkpoint
    src = random_revcol()
    path = write_official_checkpoint(tmp_path / 'official.pth', src, layout)
    ckpt = _load_checkpoint(str(path))
    if layout == 'detection':  # the official detector's neck, as our stand-in model names it
        del ckpt['state_dict']['neck.lateral_convs.0.conv.weight']
        ckpt['state_dict']['neck.conv.weight'] = torch.randn(4, 4, 3, 3)
    through_hook(ckpt)
    sd = ckpt['state_dict']
    backbone = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    assert set(backbone) == set(src.state_dict())  # renamed, first-column alpha and heads dropped
    check_padded(backbone, src.state_dict())
    if layout == 'detection':
        assert 'neck.conv.weight' in sd


def test_hook_never_pads_on_resume():
    k7 = random_revcol(kernel_size=7)
    ckpt = detector_like_checkpoint(k7)
    before = dict(ckpt['state_dict'])
    through_hook(ckpt, mode='resume')
    assert all(torch.equal(ckpt['state_dict'][k], v) for k, v in before.items())
    through_hook(ckpt)  # same size: a no-op even when not resuming
    assert all(torch.equal(ckpt['state_dict'][k], v) for k, v in before.items())
    with pytest.raises(CheckpointMismatchError, match=r'resume(.|\n)*shape mismatch'):
        through_hook(detector_like_checkpoint(random_revcol()), mode='resume')


# --------------------------------------------------------------------------- 2-iteration runs (mmdet, mmseg)
CLASSES = ('circle', 'square', 'triangle')

DET_CFG = """
_base_ = ['mmdet::_base_/models/retinanet_r50_fpn.py', 'mmdet::_base_/default_runtime.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(_delete_=True, type='RevCol', arch={arch!r}, kernel_size={k}, init_cfg=None),
    neck=dict(in_channels={channels!r}, out_channels=16),
    bbox_head=dict(num_classes=3, in_channels=16, feat_channels=16, stacked_convs=1))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root={root!r}, metainfo=dict(classes={classes!r}),
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='img_dir/train/'),
                 filter_cfg=dict(filter_empty_gt=True),
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                           dict(type='PackDetInputs')]))
"""

SEG_CFG = """
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(64, 64)),
    backbone=dict(type='RevCol', arch={arch!r}, kernel_size={k}, init_cfg=None),
    decode_head=dict(type='FCNHead', in_channels={channels[3]}, in_index=3, channels=16, num_convs=1,
                     concat_input=False, num_classes=4, norm_cfg=dict(type='BN', requires_grad=True),
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode='whole'))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=False),
    dataset=dict(type='BaseSegDataset', data_root={root!r}, img_suffix='.png', seg_map_suffix='.png',
                 metainfo=dict(classes=('background', ) + {classes!r}), reduce_zero_label=False,
                 data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                           dict(type='PackSegInputs')]))
"""

COMMON = """
train_cfg = dict(type='IterBasedTrainLoop', max_iters={iters})
val_cfg = val_dataloader = val_evaluator = test_cfg = test_dataloader = test_evaluator = None
optim_wrapper = dict(
    type='OptimWrapper', constructor='RevColLayerDecayOptimizerConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.85, decay_type='layer_wise'))
param_scheduler = []
custom_hooks = [dict(type='KernelPaddingHook')]
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2))
log_processor = dict(by_epoch=False)
visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
load_from = {load_from!r}
resume = {resume!r}
work_dir = {work_dir!r}
randomness = dict(seed=0)
"""


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    demo_data = pytest.importorskip('mmrevcol.demo_data')
    root = tmp_path_factory.mktemp('demo') / 'revcol_demo'
    demo_data.generate(str(root), num_train=4, num_val=2, size=64, seed=0, verbose=False)
    return str(root)


class SnapshotHook(Hook):
    """Copies the model's state dict in before_train (after load_from / resume, before the first step)."""
    priority = 'LOWEST'

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        self.state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()}


def make_runner(tmp_path, template, k, load_from, work_dir, iters=2, resume=False, root=None):
    from mmengine.runner import Runner
    channels = TINY['channels']
    text = template.format(arch=TINY, k=k, channels=channels, root=root, classes=CLASSES) + COMMON.format(
        iters=iters, load_from=str(load_from), resume=resume, work_dir=str(work_dir))
    path = tmp_path / f'cfg_{len(list(tmp_path.glob("cfg_*.py")))}.py'
    path.write_text(textwrap.dedent(text))
    runner = Runner.from_cfg(Config.fromfile(str(path)))
    snapshot = SnapshotHook()
    runner.register_hook(snapshot)
    return runner, snapshot


def save_k3_model(runner_model, path):
    """A k=3 model of the same task, saved like any mmengine checkpoint (``backbone.``-prefixed keys)."""
    sd = runner_model.state_dict()
    torch.save({'state_dict': sd, 'meta': {}}, str(path))
    return sd


def check_run(runner, snapshot, source_sd, k):
    model = runner.model
    num_ids = sum(TINY['layers']) + TINY['num_columns'] + 1
    # load_from + KernelPaddingHook: backbone kernels padded around the k=3 weights, everything else loaded as is
    loaded = snapshot.state_dict
    for key, src in source_sd.items():
        if DW.search(key):
            assert loaded[key].shape[-1] == k
    check_padded({key: loaded[key] for key in source_sd}, source_sd)
    # trained 2 iterations with layer-wise decay
    assert runner.iter == 2
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert torch.isfinite(torch.as_tensor(loss))
    named = dict(model.named_parameters())
    group_of = {id(p): g for g in runner.optim_wrapper.optimizer.param_groups for p in g['params']}
    assert len(group_of) == sum(p.requires_grad for p in named.values())
    assert group_of[id(named['backbone.stem.0.weight'])]['lr'] == pytest.approx(1e-4 * 0.85**(num_ids - 1))
    assert group_of[id(named['backbone.columns.1.levels.3.blocks.0.gamma'])]['lr'] == pytest.approx(1e-4 * 0.85)
    head = next(n for n in named if not n.startswith('backbone.'))
    assert group_of[id(named[head])]['lr'] == pytest.approx(1e-4)
    # the weights moved
    assert not torch.equal(named['backbone.stem.0.weight'].detach(), loaded['backbone.stem.0.weight'])


def test_mmdet_run_load_from_padding_and_layer_decay_then_resume(tmp_path, demo_root):
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    cfg3 = Config.fromfile(_write(tmp_path / 'k3.py', DET_CFG.format(arch=TINY, k=3, channels=TINY['channels'],
                                                                    root=demo_root, classes=CLASSES)))
    k3 = MODELS.build(cfg3.model)
    k3.init_weights()
    source = save_k3_model(k3, tmp_path / 'k3_detector.pth')

    runner, snap = make_runner(tmp_path, DET_CFG, 7, tmp_path / 'k3_detector.pth', tmp_path / 'work', root=demo_root)
    runner.train()
    check_run(runner, snap, source, 7)
    saved = torch.load(str(tmp_path / 'work' / 'iter_2.pth'), map_location='cpu', weights_only=False)['state_dict']

    # resume: the run's own checkpoint (7x7 already) is loaded as it is, never padded again
    runner2, snap2 = make_runner(tmp_path, DET_CFG, 7, tmp_path / 'work' / 'iter_2.pth', tmp_path / 'work',
                                 iters=3, resume=True, root=demo_root)
    runner2.train()
    assert runner2.iter == 3
    for key, v in saved.items():
        assert torch.equal(snap2.state_dict[key], v), key


def test_mmseg_run_load_from_padding_and_layer_decay(tmp_path, demo_root):
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    cfg3 = Config.fromfile(_write(tmp_path / 'k3.py', SEG_CFG.format(arch=TINY, k=3, channels=TINY['channels'],
                                                                    root=demo_root, classes=CLASSES)))
    k3 = MODELS.build(cfg3.model)
    k3.init_weights()
    source = save_k3_model(k3, tmp_path / 'k3_segmentor.pth')
    runner, snap = make_runner(tmp_path, SEG_CFG, 13, tmp_path / 'k3_segmentor.pth', tmp_path / 'work',
                               root=demo_root)
    runner.train()
    check_run(runner, snap, source, 13)


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)
