"""RevColClassifier: intermediate supervision (heads, decoders, loss weights), reversible training with the extra
heads, AMP/Mixup/EMA compatibility, and official classification checkpoints."""
import re
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.model import ExponentialMovingAverage
from mmpretrain.structures import DataSample

import mmrevcol  # noqa: F401
from mmrevcol.checkpoint import CheckpointMismatchError
from mmrevcol.checkpoint.revcol_cls import convert_revcol_cls_heads
from mmrevcol.models import RevColClassifier
from mmrevcol.models.classifiers.revcol_classifier import RevColDecoder, supervised_columns
from test_kernel_padding import to_official_key

TINY = dict(channels=[8, 16, 24, 32], layers=[1, 1, 1, 1], num_columns=4)
NUM_CLASSES = 5
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def classifier(num_columns=4, num_classes=NUM_CLASSES, init=True, **kwargs) -> RevColClassifier:
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')  # its parts are built from the default scope's registry
    backbone = dict(type='RevCol', arch=dict(TINY, num_columns=num_columns))
    backbone.update(kwargs.pop('backbone', {}))
    head = dict(type='RevColClsHead', num_classes=num_classes, in_channels=TINY['channels'][-1])
    if 'head_loss' in kwargs:
        head['loss'] = kwargs.pop('head_loss')
    model = RevColClassifier(
        backbone=backbone,
        head=head,
        data_preprocessor=dict(type='ClsDataPreprocessor', mean=MEAN, std=STD, num_classes=num_classes),
        **kwargs)
    if init:
        model.init_weights()
    return model


def batch(n=2, size=(64, 64), seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=g) for _ in range(n)]
    samples = [DataSample().set_gt_label(i % NUM_CLASSES) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


def randomise(model, seed=0):
    """Every parameter random (so each one matters), alphas in [0.3, 0.7], layer scales O(0.3)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.alpha.' in name:
                p.copy_(torch.rand(p.shape, generator=g) * 0.4 + 0.3)
            elif name.endswith('gamma') or (p.ndim == 1 and 'norm' in name and name.endswith('weight')):
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.5)
            else:
                p.copy_((torch.rand(p.shape, generator=g) - 0.5) * 0.4)
    return model


# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('num_columns,taps', [(4, [0, 1, 2, 3]), (8, [1, 3, 5, 7]), (16, [3, 7, 11, 15])])
def test_heads_and_loss_weights(num_columns, taps):
    model = classifier(num_columns)
    assert supervised_columns(num_columns) == model.taps == taps
    assert len(model.aux_heads) == 3 and len(model.decoders) == 3
    assert model.bce_weights == pytest.approx([3, 2, 1])
    assert model.ce_weights == pytest.approx([0.175, 0.35, 0.525, 1.0])

    data = model.data_preprocessor(batch(), True)
    losses = model(**data, mode='loss')
    cols = [t + 1 for t in taps]
    assert sorted(losses) == sorted([f'loss_cls_col{c}' for c in cols] + [f'loss_rec_col{c}' for c in cols[:-1]])

    # every term is its head's loss times its weight (recomputed independently here)
    logits = model.predict_all(data['inputs'])
    labels = torch.tensor([s.gt_label.item() for s in data['data_samples']])
    img = (data['inputs'] * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)) / 255
    _, tops = model.backbone.forward_columns(data['inputs'], taps)
    for i, c in enumerate(cols):
        assert losses[f'loss_cls_col{c}'].item() == pytest.approx(
            model.ce_weights[i] * F.cross_entropy(logits[i], labels).item(), rel=1e-5)
        if i < 3:
            rec = model.decoders[i](tops[i], (64, 64))
            bce = F.binary_cross_entropy_with_logits(rec, img.clamp(0.01, 0.99))
            assert losses[f'loss_rec_col{c}'].item() == pytest.approx(model.bce_weights[i] * bce.item(), rel=1e-5)


def test_configurable_weights_and_other_column_counts():
    model = classifier(4, bce_weights=[1, 1, 1], ce_weights=[0, 0, 0, 2])
    assert model.bce_weights == [1, 1, 1] and model.ce_weights == [0, 0, 0, 2]
    with pytest.raises(ValueError, match='4 ce_weights and 3 bce_weights'):
        classifier(4, ce_weights=[1.0])
    assert supervised_columns(2) == [0, 1] and supervised_columns(9) == [1, 3, 5, 7, 8]
    two = classifier(2)
    assert two.bce_weights == pytest.approx([3]) and two.ce_weights == pytest.approx([0.35, 1.0])
    single = classifier(4, intermediate_supervision=False)
    assert single.taps == [3] and not single.aux_heads and not single.decoders
    losses = single(**single.data_preprocessor(batch(), True), mode='loss')
    assert list(losses) == ['loss_cls_col4']


@pytest.mark.parametrize('size', [(97, 75), (64, 64), (33, 130)])
def test_decoder_output_matches_input_size(size):
    model = classifier(4)
    x = torch.randn(2, 3, *size)
    _, tops = model.backbone.forward_columns(x, [0])
    out = model.decoders[0](tops[0], x.shape[-2:])
    assert out.shape == x.shape
    data = model.data_preprocessor(batch(size=size), True)
    losses = model(**data, mode='loss')  # the BCE against the odd-sized image runs
    assert all(torch.isfinite(v) for v in losses.values())


def test_decoder_matches_official_x2_path_on_multiples_of_32():
    """On sizes the official decoder handles (multiples of 32), resizing to the level sizes is its fixed x2."""
    dec = RevColDecoder(TINY['channels']).eval()
    x = torch.randn(1, 32, 2, 3)
    ref = x
    for proj, blocks in zip(dec.proj_layers, dec.normal_layers):
        ref = blocks(F.interpolate(proj(ref), scale_factor=2, mode='bilinear', align_corners=True))
    ref = dec.projback(ref)
    assert torch.equal(dec(x, (64, 96)), ref)


def test_prediction_uses_final_head_only():
    model = classifier(4).eval()
    data = model.data_preprocessor(batch(), False)
    with torch.no_grad():
        preds = model(**data, mode='predict')
        final = model.predict_all(data['inputs'])[-1]
    assert torch.allclose(torch.stack([p.pred_score for p in preds]), final.softmax(-1), atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
def _grads(model, data, seed=0):
    model.zero_grad()
    torch.manual_seed(seed)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize('drop_path', [0.0, 0.2])
def test_reversible_gradients_match_plain(drop_path):
    plain = randomise(classifier(4, backbone=dict(drop_path_rate=drop_path))).train()
    rev = classifier(4, backbone=dict(drop_path_rate=drop_path, reversible=True)).train()
    rev.load_state_dict(plain.state_dict())
    data = plain.data_preprocessor(batch(n=2), True)
    loss_p, gp = _grads(plain, data)
    loss_r, gr = _grads(rev, data)
    assert torch.allclose(loss_p, loss_r, rtol=1e-6)
    assert gp.keys() == gr.keys() and len(gp) == len(list(plain.parameters()))
    assert any(k.startswith('backbone.columns.0.') for k in gp)  # the first column got gradients through the heads
    for name in gp:
        err = ((gp[name] - gr[name]).abs().max() / gp[name].abs().max().clamp_min(1e-30)).item()
        assert err < 1e-5, (name, err)


def _saved_activation_bytes(model, data) -> int:
    """Bytes autograd keeps for backward during a loss forward (unique storages, parameters excluded): a
    deterministic measure of training activation memory."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    return sum(seen.values())


def test_reversible_activation_memory_constant_in_columns_with_heads():
    """The heads sit on 4 columns whatever the count: 16 reversible columns keep <= 1.10x what 4 keep; plain
    autograd grows (the benchmark tools/analysis/benchmark_classifier.py measures the real peaks)."""
    data = None
    saved = {}
    for mode in (True, False):
        for n in (4, 16):
            model = classifier(n, init=False, backbone=dict(reversible=mode)).train()
            data = data or model.data_preprocessor(batch(n=2, size=(64, 64)), True)
            saved[mode, n] = _saved_activation_bytes(model, data)
    assert saved[True, 16] <= 1.10 * saved[True, 4], saved
    assert saved[False, 16] > 2 * saved[False, 4], saved  # measured 2.7x


def test_mixup_cutmix_soft_targets_and_ema():
    model = classifier(4, train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
                       backbone=dict(reversible=True, drop_path_rate=0.1),
                       head_loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'))
    ema = ExponentialMovingAverage(model, momentum=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = model.data_preprocessor(batch(n=4), True)
    assert data['data_samples'][0].gt_score.shape == (NUM_CLASSES, )  # soft targets reached the heads
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    ema.update_parameters(model)
    ema.update_parameters(model)
    ema.eval()
    with torch.no_grad():
        preds = ema(**model.data_preprocessor(batch(n=1), False), mode='predict')
    assert preds[0].pred_score.shape == (NUM_CLASSES, )


@pytest.mark.skipif(not hasattr(torch, 'autocast'), reason='no autocast')
def test_amp_bf16_reversible_step():
    model = classifier(4, backbone=dict(reversible=True)).train()
    data = model.data_preprocessor(batch(), True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(**data, mode='loss')
    assert all(v.dtype == torch.float32 for v in losses.values())
    loss, _ = model.parse_losses(losses)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ----------------------------------------------------------------------------------------------------------------
_TO_OFFICIAL_HEAD = [
    (r'^head\.norm\.', 'cls_blocks.3.classifier.0.'),
    (r'^head\.fc\.', 'cls_blocks.3.classifier.1.'),
    (r'^aux_heads\.(\d)\.norm\.', r'cls_blocks.\1.classifier.0.'),
    (r'^aux_heads\.(\d)\.fc\.', r'cls_blocks.\1.classifier.1.'),
    (r'^decoders\.(\d)\.', r'decoder_blocks.\1.'),
    (r'\.depthwise_conv\.', '.dwconv.'),
    (r'\.pointwise_conv1\.', '.pwconv1.'),
    (r'\.pointwise_conv2\.', '.pwconv2.'),
]


def write_official_classification_checkpoint(path, model: RevColClassifier):
    """Official ``FullNet`` layout: ``model`` dict, ``module.`` prefixes, ``subnet*`` backbone keys with
    first-column alphas, ``cls_blocks.{0..3}`` and ``decoder_blocks.{0..2}``, plus an EMA copy."""
    weights = OrderedDict()
    for key, value in model.state_dict().items():
        if key.startswith('backbone.'):
            weights[to_official_key(key[len('backbone.'):])] = value.clone()
        elif not key.startswith('data_preprocessor'):
            for pattern, repl in _TO_OFFICIAL_HEAD:
                key = re.sub(pattern, repl, key)
            weights[key] = value.clone()
    for level, c in enumerate(model.backbone.channels):
        weights[f'subnet0.alpha{level}'] = torch.full((1, c, 1, 1), 0.5)
    ckpt = {'model': OrderedDict((f'module.{k}', v) for k, v in weights.items()),
            'model_ema': OrderedDict((k, torch.zeros_like(v)) for k, v in weights.items()), 'epoch': 299}
    torch.save(ckpt, str(path))
    return path


def test_official_checkpoint_loads_backbone_strictly_and_maps_heads(tmp_path):
    src = randomise(classifier(4), seed=3).eval()
    path = write_official_classification_checkpoint(tmp_path / 'revcol_tiny_1k.pth', src)
    model = classifier(4, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    ours, theirs = model.state_dict(), src.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), 'every weight, heads and decoders included'
    data = src.data_preprocessor(batch(), False)
    with torch.no_grad():
        for a, b in zip(src.predict_all(data['inputs']), model.eval().predict_all(data['inputs'])):
            assert torch.equal(a, b)


def test_official_checkpoint_other_classes_and_kernel_size(tmp_path, capsys):
    """Fine-tuning on another label set with bigger kernels: the backbone loads (kernel-padded), the mismatched
    classifier weights stay at init and are named in one log line."""
    src = randomise(classifier(4), seed=4)
    path = write_official_classification_checkpoint(tmp_path / 'official.pth', src)
    logger = MMLogger.get_current_instance()
    messages = []
    handler = type('H', (__import__('logging').Handler, ), {'emit': lambda self, r: messages.append(r.getMessage())})()
    logger.addHandler(handler)
    try:
        model = classifier(4, num_classes=7, backbone=dict(kernel_size=7),
                           init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    finally:
        logger.removeHandler(handler)
    sd = model.state_dict()
    w = sd['backbone.columns.1.levels.0.blocks.0.depthwise_conv.weight']
    assert w.shape[-1] == 7
    assert torch.equal(w[..., 2:5, 2:5], src.state_dict()['backbone.columns.1.levels.0.blocks.0.depthwise_conv.weight'])
    assert torch.equal(sd['decoders.1.projback.0.weight'], src.state_dict()['decoders.1.projback.0.weight'])
    assert torch.equal(sd['head.norm.weight'], src.state_dict()['head.norm.weight'])
    assert sd['head.fc.weight'].shape == (7, 32)
    line = [m for m in messages if m.startswith('RevColClassifier: backbone loaded strictly')]
    assert len(line) == 1 and "'head.fc.weight'" in line[0] and "'aux_heads.0.fc.bias'" in line[0]


def test_wrong_backbone_checkpoint_is_a_named_error(tmp_path):
    path = write_official_classification_checkpoint(tmp_path / 'small.pth', classifier(8))
    with pytest.raises(CheckpointMismatchError, match='num_columns'):
        classifier(4, init_cfg=dict(type='Pretrained', checkpoint=str(path)))


def test_head_mapping_is_idempotent_and_names_leftovers():
    src = classifier(4).state_dict()
    ours = {k: v for k, v in src.items() if not k.startswith(('backbone.', 'data_preprocessor'))}
    mapped, unmapped = convert_revcol_cls_heads(ours, 4, 3)
    assert mapped.keys() == ours.keys() and not unmapped
    official = {'cls_blocks.0.classifier.1.weight': torch.zeros(1), 'cls_blocks.1.classifier.1.weight': torch.zeros(1),
                'decoder_blocks.0.projback.0.weight': torch.zeros(1), 'subnet0.level0.x': torch.zeros(1)}
    mapped, unmapped = convert_revcol_cls_heads(official, 4, 3)  # 2 official heads for 4: only the last maps
    assert list(mapped) == ['head.fc.weight']  # 1 official decoder for 3: none maps
    assert unmapped == ['cls_blocks.0.classifier.1.weight', 'decoder_blocks.0.projback.0.weight']
