"""EMA distillation: the mixing matches mmpretrain's, the teacher target matches a hand computation, and the
hook wires mmengine's EMAHook model in as the teacher in a real (tiny) training run."""
import copy

import numpy as np
import pytest
import torch

import mmrevcol  # noqa: F401
from mmrevcol.models.classifiers import (EMADistillClassifier, EMADistillDataPreprocessor, mix_with_mask,
                                         mixed_teacher_target)

# three stages (stride 16): a 32 px image gives the teacher a 2x2 probability map
TINY = dict(channels=[8, 16, 24], depths=[1, 1, 1], expansions=[2, 2, 2], num_heads=[0, 0, 2], sr_ratios=[1, 1, 1],
            block_types=['hr', 'cffn', 'transformer'], stem_channels=8)
NUM_CLASSES = 3


def classifier(alpha=0.3, augments=(dict(type='CutMix', alpha=1.0), ), probs=None):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')  # an earlier test may have left another toolbox's scope
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='EMADistillClassifier', alpha=alpha,
        data_preprocessor=dict(type='EMADistillDataPreprocessor', num_classes=NUM_CLASSES,
                               batch_augments=dict(augments=list(augments), probs=probs)),
        backbone=dict(type='HIRIViT', arch=TINY),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=24,
                  loss=dict(type='CrossEntropyLoss', use_soft=True))))
    model.init_weights()
    return model


def batch(n=4, size=32):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(1)
    return dict(inputs=[torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8) for _ in range(n)],
                data_samples=[DataSample().set_gt_label(i % NUM_CLASSES) for i in range(n)])


@pytest.mark.parametrize('kind', ['CutMix', 'Mixup'])
def test_mix_with_mask_samples_like_mmpretrain(kind):
    from mmpretrain.registry import BATCH_AUGMENTS
    aug = BATCH_AUGMENTS.build(dict(type=kind, alpha=1.0))
    x = torch.randn(6, 3, 20, 28)
    y = torch.eye(6)
    np.random.seed(3), torch.manual_seed(3)
    ref_x, ref_y = aug.mix(x.clone(), y.clone())
    np.random.seed(3), torch.manual_seed(3)
    mixed, scores, index, mask = mix_with_mask(aug, x, y)
    torch.testing.assert_close(mixed, ref_x)
    torch.testing.assert_close(scores, ref_y)
    # the recorded index and mask explain the mixed image pixel by pixel
    torch.testing.assert_close(mixed, mask * x + (1 - mask) * x[index])
    lam = scores[torch.arange(6), torch.arange(6)] if (index != torch.arange(6)).all() else None
    if kind == 'CutMix':
        assert set(mask.unique().tolist()) <= {0., 1.}
        if lam is not None:  # lam = the fraction of own pixels
            torch.testing.assert_close(lam, mask.mean().expand(6))


def test_mixed_teacher_target_by_hand():
    # two images, two classes, 2x2 probability maps; 4x4 image, the box covers the top-left 2x2 pixels
    p = torch.tensor([[[[0.9, 0.8], [0.7, 0.6]], [[0.1, 0.2], [0.3, 0.4]]],
                      [[[0.2, 0.4], [0.0, 1.0]], [[0.8, 0.6], [1.0, 0.0]]]])
    index = torch.tensor([1, 0])
    mask = torch.ones(1, 1, 4, 4)
    mask[..., :2, :2] = 0  # top-left cell comes from the partner
    # sample 0: cells (0,0) from image 1, others from image 0
    c0 = (0.2 + 0.8 + 0.7 + 0.6) / 4
    c1 = (0.8 + 0.2 + 0.3 + 0.4) / 4
    # sample 1: cell (0,0) from image 0, others from image 1
    d0 = (0.9 + 0.4 + 0.0 + 1.0) / 4
    d1 = (0.1 + 0.6 + 1.0 + 0.0) / 4
    expected = torch.tensor([[c0, c1], [d0, d1]])
    torch.testing.assert_close(mixed_teacher_target(p, index, mask), expected)
    # a box edge inside a feature cell weighs that cell by the covered fraction
    mask = torch.ones(1, 1, 4, 4)
    mask[..., :1, :1] = 0  # a quarter of cell (0,0)
    got = mixed_teacher_target(p, index, mask)
    torch.testing.assert_close(got[0, 0], torch.tensor((0.75 * 0.9 + 0.25 * 0.2 + 0.8 + 0.7 + 0.6) / 4))
    # Mixup: constant mask -> mixing of the pooled probabilities
    mask = torch.full((1, 1, 4, 4), 0.3)
    torch.testing.assert_close(mixed_teacher_target(p, index, mask), 0.3 * p.mean((2, 3)) + 0.7 * p.mean((2, 3))[index])


def test_student_target_is_alpha_mix_of_label_and_teacher():
    model = classifier(alpha=0.3).train()
    teacher = copy.deepcopy(model)
    with torch.no_grad():  # a teacher that differs from the student
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.set_teacher(teacher)
    assert 'teacher' not in ''.join(model.state_dict())  # the teacher is not part of the student's weights

    np.random.seed(0), torch.manual_seed(0)
    data = model.data_preprocessor(batch(), training=True)
    samples = data['data_samples']
    mixed_label = torch.stack([s.gt_score for s in samples]).clone()
    src = torch.stack([s.mix_source for s in samples])
    index = torch.stack([s.mix_index for s in samples])
    mask = samples[0].mix_mask
    assert 0 < mask.mean() < 1 and (index != torch.arange(4)).any()  # a real box, real partners
    torch.testing.assert_close(data['inputs'], mask * src + (1 - mask) * src[index])
    own = mask.mean()
    onehot = torch.eye(NUM_CLASSES)[[i % NUM_CLASSES for i in range(4)]]
    torch.testing.assert_close(mixed_label, own * onehot + (1 - own) * onehot[index])

    # by hand: per-location softmax of the teacher's linear head, mixed with the box mask cell by cell, averaged
    teacher.eval()
    with torch.no_grad():
        fmap = teacher.backbone(src)[-1]
        n, c, h, w = fmap.shape
        assert (h, w) == (2, 2)
        weight, bias = teacher.head.fc.weight, teacher.head.fc.bias
        expected = torch.zeros(n, NUM_CLASSES)
        cell_h, cell_w = 32 // h, 32 // w
        for i in range(n):
            for u in range(h):
                for v in range(w):
                    m = mask[0, u * cell_h:(u + 1) * cell_h, v * cell_w:(v + 1) * cell_w].mean()
                    pa = torch.softmax(weight @ fmap[i, :, u, v] + bias, 0)
                    pb = torch.softmax(weight @ fmap[index[i], :, u, v] + bias, 0)
                    expected[i] += (m * pa + (1 - m) * pb) / (h * w)
    teacher.train()
    model.distill_targets(samples)
    got = torch.stack([s.gt_score for s in samples])
    torch.testing.assert_close(got, 0.3 * mixed_label + 0.7 * expected)
    assert teacher.training  # the teacher's mode is restored

    # the student's loss is the soft cross-entropy against that target
    with torch.no_grad():
        logits = model.head(model.extract_feat(data['inputs']))
        ref = -(got * logits.log_softmax(-1)).sum(-1).mean()
    model.distill_targets = lambda samples: None  # targets already set above
    loss = model.loss(data['inputs'], samples)['loss']
    torch.testing.assert_close(loss, ref)


def test_without_teacher_or_mixing_the_loss_is_plain():
    model = classifier().train()
    np.random.seed(0), torch.manual_seed(0)
    data = model.data_preprocessor(batch(), training=True)
    before = torch.stack([s.gt_score for s in data['data_samples']]).clone()
    model.distill_targets(data['data_samples'])  # no teacher: unchanged
    torch.testing.assert_close(torch.stack([s.gt_score for s in data['data_samples']]), before)
    data = model.data_preprocessor(batch(), training=False)  # no mixing at test time
    assert 'mix_source' not in data['data_samples'][0]


def test_hook_attaches_emahook_model_in_a_real_run(tmp_path):
    """Two training iterations through mmengine's Runner: EMAHook's averaged model becomes the teacher."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    from PIL import Image
    rng = np.random.default_rng(0)
    for cls in ('a', 'b'):
        (tmp_path / 'data' / cls).mkdir(parents=True)
        for i in range(4):
            image = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
            image.save(tmp_path / 'data' / cls / f'{i}.png')
    cfg = dict(
        model=dict(type='EMADistillClassifier', alpha=0.5,
                   data_preprocessor=dict(type='EMADistillDataPreprocessor', num_classes=2,
                                          batch_augments=dict(augments=[dict(type='CutMix', alpha=1.0)])),
                   backbone=dict(type='HIRIViT', arch=TINY), neck=dict(type='GlobalAveragePooling'),
                   head=dict(type='LinearClsHead', num_classes=2, in_channels=24,
                             loss=dict(type='CrossEntropyLoss', use_soft=True))),
        work_dir=str(tmp_path / 'work'),
        train_dataloader=dict(
            batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(type='CustomDataset', data_root=str(tmp_path / 'data'),
                         pipeline=[dict(type='LoadImageFromFile'), dict(type='RandomResizedCrop', scale=32),
                                   dict(type='PackInputs')])),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        custom_hooks=[dict(type='EMAHook', momentum=0.5, update_buffers=True, priority='ABOVE_NORMAL'),
                      dict(type='EMADistillHook')],
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1), checkpoint=None),
        default_scope='mmpretrain', log_level='WARNING')
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    ema_hook = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
    assert runner.model.teacher is ema_hook.ema_model.module
    assert ema_hook.ema_model.steps.item() == 2
    # the teacher is the average, not the student
    diffs = [(a - b).abs().max() for a, b in zip(runner.model.parameters(), runner.model.teacher.parameters())]
    assert max(diffs) > 0
