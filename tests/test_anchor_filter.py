"""A 20x2000 image in a detection training set (issue #9 row 13): skipped with a warning naming it, the run goes on.

Cause: the image is resized to fit the long side (1x128 in the demo, 13x1333 at (1333, 800)), thinner than any
RPN anchor; with ``allowed_border=0`` mmdet's AnchorHead then raises "no valid anchor inside the image boundary".
"""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config

import mmrevcol  # noqa: F401
from mmrevcol.datasets import SkipImagesWithoutAnchors
from mmrevcol.demo_data import generate
from tools_loader import load_tool

REPO = Path(__file__).resolve().parents[1]
DET = 'configs/demo/cascade_revcol_demo.py'


def _rpn_anchors():
    return Config.fromfile(str(REPO / DET)).model.rpn_head.anchor_generator


def test_transform_applies_mmdets_inside_test(caplog):
    check = SkipImagesWithoutAnchors(_rpn_anchors(), allowed_border=0)
    assert check.has_anchor_inside((96, 96)) and check.has_anchor_inside((128, 40))
    assert not check.has_anchor_inside((1, 128)) and not check.has_anchor_inside((128, 8))
    results = dict(img_path='x/thin.png', img_shape=(1, 128), ori_shape=(20, 2000))
    assert check(results) is None
    assert check(dict(results, img_shape=(96, 96))) is not None
    assert SkipImagesWithoutAnchors(_rpn_anchors(), allowed_border=-1).has_anchor_inside((1, 128))


def test_configs_state_it_for_anchor_heads_with_inside_anchors_only():
    """The detection recipes state the filter with their RPN's anchors (every config: test_same_run.py)."""
    for config, expected in [(DET, True), ('configs/cascade_revcol_t_coco.py', True),
                             ('configs/retinanet_revcol_t_coco.py', False), ('configs/upernet_revcol_t_ade20k.py', False)]:
        cfg = Config.fromfile(str(REPO / config))
        pipeline = cfg.train_dataloader.dataset.pipeline
        types = [t['type'] for t in pipeline]
        assert ('SkipImagesWithoutAnchors' in types) == expected, (config, types)
        if expected:
            assert types[-2:] == ['SkipImagesWithoutAnchors', 'PackDetInputs']
            assert pipeline[-2].anchor_generator == cfg.model.rpn_head.anchor_generator
            assert pipeline[-2].allowed_border == cfg.model.train_cfg.rpn.allowed_border == 0


def _add_thin_image(root: str, h: int = 20, w: int = 2000) -> None:
    img = np.full((h, w, 3), 200, np.uint8)
    img[2:h - 2, 10:60] = 30
    cv2.imwrite(f'{root}img_dir/train/thin.png', img)
    ann_file = f'{root}annotations/instances_train.json'
    ann = json.load(open(ann_file))
    ann['images'].append(dict(id=999, file_name='thin.png', width=w, height=h))
    box = [10, 2, 50, h - 4]
    ann['annotations'].append(dict(id=999, image_id=999, category_id=2, bbox=box, area=box[2] * box[3], iscrowd=0,
                                   segmentation=[[10, 2, 60, 2, 60, h - 2, 10, h - 2]]))
    json.dump(ann, open(ann_file, 'w'))


@pytest.mark.slow  # ~30 s; the two tests above cover the row in the fast suite
def test_detector_training_goes_on_past_a_20x2000_image(tmp_path):
    root = generate(str(tmp_path / 'data'), num_train=3, num_val=2, size=64, verbose=False).rstrip('/') + '/'
    _add_thin_image(root)
    opts = ['model.backbone.arch.channels=[16,32,48,64]', 'model.backbone.arch.layers=[1,1,1,1]',
            'model.neck.in_channels=[16,32,48,64]',
            *[f'{s}.dataset.data_root={root}' for s in ('train_dataloader', 'val_dataloader', 'test_dataloader')],
            f'val_evaluator.ann_file={root}annotations/instances_val.json', 'train_cfg.max_iters=4',
            'train_cfg.val_interval=100', 'train_dataloader.batch_size=1', 'default_hooks.logger.interval=1']
    # 4 iterations of batch 1 over a shuffled 4-image set: the infinite sampler's first pass visits thin.png
    work = tmp_path / 'work'
    load_tool('train').main([str(REPO / DET), '--work-dir', str(work), '--cfg-options', *opts])  # before: ValueError
    log = ''.join(p.read_text() for p in work.glob('*/*.log'))
    assert f'skipping training image {root}img_dir/train/thin.png: (20, 2000)' in log, log[-3000:]
    assert 'Iter(train) [4/4]' in log and (work / 'iter_4.pth').is_file()
