"""tools/check_dataset.py (issue #9 row 14, issue #18 row 3-5): clean sets report clean; a copy with one truncated
JPEG, one missing file and one box outside the image lists exactly those three; mmseg label maps are checked too;
images are read the way the pipeline reads them (EXIF orientation), unknown category ids, out-of-range label values,
size-mismatched label maps, ignored polygons and empty boxes are named with their file."""
import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

import mmrevcol  # noqa: F401
from conftest import SHARED, require_shared
from mmrevcol.demo_data import generate
from mmrevcol.utils.cli import LiteralDictAction, run_tool
from mmrevcol.utils.dataset_check import check_config
from tools_loader import load_tool

REPO = Path(__file__).resolve().parents[1]
DET = 'configs/acceptance/cascade_revcol_coco_mini_person.py'
SEG = 'configs/acceptance/upernet_revcol_camvid.py'
SPLITS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _roots(root, det):
    opts = [f'{s}.dataset.data_root={root}' for s in SPLITS]
    return opts + ([f'val_evaluator.ann_file={root}annotations/instances_train2017.json'] if det else [])


def _tool(config, opts, capsys):
    code = load_tool('check_dataset').main([str(REPO / config), '--cfg-options', *opts])
    return code, capsys.readouterr().out


def _problems(config, opts, splits=('train', 'val', 'test')):
    cfg = Config.fromfile(str(REPO / config))
    parser = argparse.ArgumentParser()  # the tool's own parsing of --cfg-options
    parser.add_argument('--cfg-options', nargs='+', action=LiteralDictAction)
    cfg.merge_from_dict(parser.parse_args(['--cfg-options', *opts]).cfg_options)
    return check_config(cfg, splits=splits, log=lambda *_: None)


def _break_coco_copy(src: Path, dst: Path, image_dir: str, ann_file: str, to_jpeg: bool = False):
    """One truncated JPEG, one missing file, one box outside its image; returns their three paths."""
    shutil.copytree(src, dst)
    ann_path = dst / ann_file
    coco = json.loads(ann_path.read_text())
    images = coco['images']
    if to_jpeg:  # the demo set is PNG: make the first image a JPEG
        png = dst / image_dir / images[0]['file_name']
        jpg = png.with_suffix('.jpg')
        cv2.imwrite(str(jpg), cv2.imread(str(png)))
        png.unlink()
        images[0]['file_name'] = jpg.name
    truncated = dst / image_dir / images[0]['file_name']
    data = truncated.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    missing = dst / image_dir / images[1]['file_name']
    missing.unlink()
    # a box of a category the config trains on (coco_mini_person: 1) on an image after the first two
    used = {1} if any(c['id'] == 1 and c['name'] == 'person' for c in coco['categories']) else \
        {c['id'] for c in coco['categories']}
    ann = next(a for a in coco['annotations'] if a['category_id'] in used
               and a['image_id'] not in (images[0]['id'], images[1]['id']))
    outside_img = next(i for i in images if i['id'] == ann['image_id'])
    ann['bbox'] = [outside_img['width'] - 10.0, 5.0, 30.0, 20.0]
    ann_path.write_text(json.dumps(coco))
    return {('truncated', str(truncated)), ('missing', str(missing)),
            ('box-outside', str(dst / image_dir / outside_img['file_name']))}


# ---------------------------------------------------------------------------------------------------------------
def test_demo_coco_copy_lists_exactly_the_three_faults(tmp_path):
    root = Path(generate(str(tmp_path / 'demo'), num_train=4, num_val=2, size=64, verbose=False))
    expected = _break_coco_copy(root, tmp_path / 'broken', 'img_dir/train', 'annotations/instances_train.json',
                                to_jpeg=True)
    broken = str(tmp_path / 'broken') + '/'
    problems = _problems('configs/demo/cascade_revcol_demo.py', [f'{s}.dataset.data_root={broken}' for s in SPLITS],
                         splits=('train',))
    assert {(p.kind, p.path) for p in problems} == expected, problems
    assert len(problems) == 3 and all(p.severity == 'error' for p in problems)


def test_demo_seg_label_maps(tmp_path):
    root = Path(generate(str(tmp_path / 'demo'), num_train=4, num_val=2, size=64, verbose=False))
    opts = [f'{s}.dataset.data_root={root}' for s in SPLITS]
    assert _problems('configs/demo/upernet_revcol_demo.py', opts) == []
    labels = sorted((root / 'ann_dir' / 'train').iterdir())
    labels[0].unlink()
    cv2.imwrite(str(labels[1]), np.zeros((32, 48), np.uint8))  # other size than its image
    cv2.imwrite(str(labels[2]), np.full((64, 64), 255, np.uint8))  # ignore_index only
    labels[3].write_bytes(b'not a png')
    found = {(p.kind, p.path, p.severity)
             for p in _problems('configs/demo/upernet_revcol_demo.py', opts, splits=('train',))}
    assert found == {('missing', str(labels[0]), 'error'), ('size-mismatch', str(labels[1]), 'error'),
                     ('empty-annotation', str(labels[2]), 'warning'), ('unreadable', str(labels[3]), 'error')}, found


@pytest.mark.shared
def test_shared_sets_are_clean_and_broken_copy_lists_three(tmp_path, capsys):
    coco = require_shared(SHARED / 'data' / 'coco_mini' / 'annotations' / 'instances_train2017.json').parents[1]
    camvid = require_shared(SHARED / 'data' / 'camvid' / 'img_dir').parent
    assert _problems(SEG, _roots(str(camvid), det=False)) == []
    assert _problems(DET, _roots(str(coco) + '/', det=True)) == []

    expected = _break_coco_copy(coco, tmp_path / 'coco_mini', 'train2017', 'annotations/instances_train2017.json')
    code, out = _tool(DET, _roots(str(tmp_path / 'coco_mini') + '/', det=True), capsys)
    assert code == 1, out
    listed = [line for line in out.splitlines() if line.startswith('[') and line.split()[1] in ('error', 'warning')]
    assert len(listed) == 3, out
    assert {(line.split()[2], line.split()[3].rstrip(':')) for line in listed} == expected, out
    assert 'check_dataset: 3 error(s)' in out


def test_train_check_data_stops_before_training(tmp_path, capsys):
    root = Path(generate(str(tmp_path / 'demo'), num_train=3, num_val=2, size=64, verbose=False))
    missing = sorted((root / 'ann_dir' / 'train').iterdir())[0]  # a label map: images are listed from img_dir
    missing.unlink()
    opts = [f'{s}.dataset.data_root={root}/' for s in SPLITS] + ['train_cfg.max_iters=1']
    train = load_tool('train')
    code = run_tool(train.main, [str(REPO / 'configs/demo/upernet_revcol_demo.py'), '--check-data', '--work-dir',
                                 str(tmp_path / 'work'), '--cfg-options', *opts])
    captured = capsys.readouterr()
    assert code == 1 and captured.err.startswith('ERROR: 1 data error(s)'), captured.err
    assert f'error   missing            {missing}' in captured.out, captured.out[-2000:]
    assert not (tmp_path / 'work').exists()  # stopped before the runner was built


# ---------------------------------------------------------------------------------------------------------------
# Issue #18: faults that passed silently. Tiny fixture sets made with PIL in tmp dirs.
IGNORE = 'color_ignore_orientation'


def _image(path: Path, width: int, height: int, orientation=None, seed=0):
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    if orientation is None:
        img.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation  # 6: shown rotated by 90 degrees; stored frame unchanged
        img.save(path, exif=exif)


def _coco_cfg(root: Path, color_type: str):
    return Config(dict(default_scope='mmdet', train_dataloader=dict(dataset=dict(
        type='CocoDataset', data_root=str(root) + '/', ann_file='ann.json', data_prefix=dict(img='img/'),
        metainfo=dict(classes=('a', 'b')), filter_cfg=dict(filter_empty_gt=False, min_size=0),
        pipeline=[dict(type='LoadImageFromFile', color_type=color_type),
                  dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]))))


def _coco_set(root: Path):
    """normal.jpg; exif.jpg (tag 6, annotated in its stored 64x48 frame); shown.jpg (tag 6, but the COCO entry gives
    the displayed 48x64 size); annotations with an unknown category, an invalid polygon, an empty box."""
    _image(root / 'img' / 'normal.jpg', 64, 48)
    _image(root / 'img' / 'exif.jpg', 64, 48, orientation=6, seed=1)
    _image(root / 'img' / 'shown.jpg', 64, 48, orientation=6, seed=2)
    poly = [[10, 10, 30, 10, 30, 30, 10, 30]]
    images = [dict(id=1, file_name='normal.jpg', width=64, height=48),
              dict(id=2, file_name='exif.jpg', width=64, height=48),
              dict(id=3, file_name='shown.jpg', width=48, height=64)]
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[10, 10, 20, 20], area=400, segmentation=poly, iscrowd=0),
            dict(id=2, image_id=1, category_id=7, bbox=[5, 5, 10, 10], area=100, segmentation=poly, iscrowd=0),
            dict(id=3, image_id=1, category_id=2, bbox=[1, 1, 12, 12], area=144, segmentation=[[1, 1, 5, 5, 9]],
                 iscrowd=0),
            dict(id=4, image_id=2, category_id=2, bbox=[20, 10, 0.5, 10], area=5, segmentation=poly, iscrowd=0),
            dict(id=5, image_id=2, category_id=1, bbox=[10, 10, 20, 20], area=400, segmentation=poly, iscrowd=0),
            dict(id=6, image_id=3, category_id=1, bbox=[10, 10, 20, 20], area=400, segmentation=poly, iscrowd=0)]
    (root / 'ann.json').write_text(json.dumps(dict(images=images, annotations=anns, categories=[
        dict(id=1, name='a'), dict(id=2, name='b')])))


def _found(problems):
    return {(p.severity, p.kind, Path(p.path).name) for p in problems}


def test_coco_faults_named_with_their_file(tmp_path):
    _coco_set(tmp_path)
    log = []
    problems = check_config(_coco_cfg(tmp_path, IGNORE), splits=('train',), log=log.append)
    assert _found(problems) == {
        ('error', 'unknown-category', 'normal.jpg'),  # category_id 7: mmdet would drop it silently
        ('warning', 'invalid-polygon', 'normal.jpg'),  # 5 coordinates: the instance (and its box) is ignored
        ('warning', 'empty-box', 'exif.jpg'),  # w = 0.5
        ('warning', 'exif-orientation', 'exif.jpg'),  # stored frame = annotation frame = what the pipeline decodes
        ('error', 'size-mismatch', 'shown.jpg'),  # annotated in the displayed (rotated) frame
    }, problems
    by_kind = {p.kind: p for p in problems}
    assert 'category_id 7' in by_kind['unknown-category'].detail
    assert 'EXIF orientation 6' in by_kind['size-mismatch'].detail
    # the dataset summary counts what training would silently lose
    assert '3 of its 6 annotations silently lost' in log[0], log
    assert '1 unknown category_id' in log[0] and '1 empty box' in log[0] and '1 instance ignored' in log[0], log


def test_exif_rotation_is_an_error_when_the_pipeline_applies_it(tmp_path):
    """mmcv's default color_type='color' rotates the image but not its boxes: every tagged image is an error."""
    _coco_set(tmp_path)
    problems = check_config(_coco_cfg(tmp_path, 'color'), splits=('train',), log=lambda *_: None)
    exif = {(p.severity, p.kind) for p in problems if Path(p.path).name == 'exif.jpg'}
    assert ('error', 'size-mismatch') in exif, problems  # decoded 48x64, annotated 64x48
    shown = {(p.severity, p.kind) for p in problems if Path(p.path).name == 'shown.jpg'}
    assert shown == {('warning', 'exif-orientation')}, problems  # decoded rotated = the size its entry gives


def _seg_cfg(root: Path, color_type: str):
    return Config(dict(default_scope='mmseg', train_dataloader=dict(dataset=dict(
        type='BaseSegDataset', data_root=str(root) + '/', img_suffix='.jpg', seg_map_suffix='.png',
        data_prefix=dict(img_path='img', seg_map_path='ann'), metainfo=dict(classes=('bg', 'fg', 'x')),
        pipeline=[dict(type='LoadImageFromFile', color_type=color_type), dict(type='LoadAnnotations')]))))


def _seg_set(root: Path):
    """ok (clean), exif (tag 6, label in the stored frame), value (a 200 in the label), small (label 32x24)."""
    for name, orientation in (('ok', None), ('exif', 6), ('value', None), ('small', None)):
        _image(root / 'img' / f'{name}.jpg', 64, 48, orientation=orientation)
        label = np.zeros((48, 64), np.uint8)
        label[10:20, 10:30] = 1
        if name == 'value':
            label[0, :3] = 200
        if name == 'small':
            label = label[:24, :32]
        (root / 'ann').mkdir(exist_ok=True)
        Image.fromarray(label).save(root / 'ann' / f'{name}.png')


def test_seg_label_faults_named_with_their_file(tmp_path, capsys):
    _seg_set(tmp_path)
    problems = check_config(_seg_cfg(tmp_path, IGNORE), splits=('train',), log=lambda *_: None)
    assert _found(problems) == {('error', 'label-out-of-range', 'value.png'), ('error', 'size-mismatch', 'small.png'),
                                ('warning', 'exif-orientation', 'exif.jpg')}, problems
    value = next(p for p in problems if p.kind == 'label-out-of-range')
    assert '200 (3 px)' in value.detail and 'ignore_index=255' in value.detail

    # the pipeline mmcv applies by default rotates the image, not its label map: an error naming the image
    problems = check_config(_seg_cfg(tmp_path, 'color'), splits=('train',), log=lambda *_: None)
    assert ('error', 'size-mismatch', 'exif.jpg') in _found(problems), problems


def test_tool_exit_status_counts_errors_only(tmp_path, capsys):
    _seg_set(tmp_path)
    config = tmp_path / 'cfg.py'
    _seg_cfg(tmp_path, IGNORE).dump(str(config))
    assert load_tool('check_dataset').main([str(config), '--splits', 'train']) == 1
    out = capsys.readouterr().out
    assert str(tmp_path / 'ann' / 'value.png') in out and 'check_dataset: 2 error(s)' in out, out
    for name in ('value', 'small'):  # only the warning left: exit 0
        (tmp_path / 'img' / f'{name}.jpg').unlink()
        (tmp_path / 'ann' / f'{name}.png').unlink()
    assert load_tool('check_dataset').main([str(config), '--splits', 'train']) == 0
    assert 'warning exif-orientation' in capsys.readouterr().out


def test_too_small_and_too_large(tmp_path):
    _image(tmp_path / 'img' / 'tiny.jpg', 20, 12)
    label = np.zeros((12, 20), np.uint8)
    (tmp_path / 'ann').mkdir()
    Image.fromarray(label).save(tmp_path / 'ann' / 'tiny.png')
    cfg = _seg_cfg(tmp_path, IGNORE)
    problems = check_config(cfg, splits=('train',), log=lambda *_: None)
    assert _found(problems) == {('error', 'too-small', 'tiny.jpg')}, problems  # no resize, no padding
    cfg.model = dict(data_preprocessor=dict(size_divisor=32))
    problems = check_config(cfg, splits=('train',), log=lambda *_: None)
    assert _found(problems) == {('warning', 'too-small', 'tiny.jpg')}, problems  # padded: runs, mostly padding
    problems = check_config(cfg, splits=('train',), log=lambda *_: None, stride=8, max_image_mb=0.0005)
    assert _found(problems) == {('warning', 'too-large', 'tiny.jpg')}, problems
    assert 'assumed limit of 0 MiB' in problems[0].detail
