"""tools/check_dataset.py (issue #9 row 14): clean sets report clean; a copy with one truncated JPEG, one missing
file and one box outside the image lists exactly those three; mmseg label maps are checked too."""
import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config

import mmrevcol  # noqa: F401
from conftest import SHARED, require_shared
from mmrevcol.demo_data import generate
from mmrevcol.utils.cli import LiteralDictAction
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
    outside_img = images[2]
    ann = next(a for a in coco['annotations'] if a['image_id'] == outside_img['id'])
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
    assert len(problems) == 3


def test_demo_seg_label_maps(tmp_path):
    root = Path(generate(str(tmp_path / 'demo'), num_train=4, num_val=2, size=64, verbose=False))
    opts = [f'{s}.dataset.data_root={root}' for s in SPLITS]
    assert _problems('configs/demo/upernet_revcol_demo.py', opts) == []
    labels = sorted((root / 'ann_dir' / 'train').iterdir())
    labels[0].unlink()
    cv2.imwrite(str(labels[1]), np.zeros((32, 48), np.uint8))  # other size than its image
    cv2.imwrite(str(labels[2]), np.full((64, 64), 255, np.uint8))  # ignore_index only
    labels[3].write_bytes(b'not a png')
    found = {(p.kind, p.path) for p in _problems('configs/demo/upernet_revcol_demo.py', opts, splits=('train',))}
    assert found == {('missing', str(labels[0])), ('size-mismatch', str(labels[1])),
                     ('empty-annotation', str(labels[2])), ('unreadable', str(labels[3]))}, found


@pytest.mark.shared
def test_shared_sets_are_clean_and_broken_copy_lists_three(tmp_path, capsys):
    coco = require_shared(SHARED / 'data' / 'coco_mini' / 'annotations' / 'instances_train2017.json').parents[1]
    camvid = require_shared(SHARED / 'data' / 'camvid' / 'img_dir').parent
    assert _problems(SEG, _roots(str(camvid), det=False)) == []
    assert _problems(DET, _roots(str(coco) + '/', det=True)) == []

    expected = _break_coco_copy(coco, tmp_path / 'coco_mini', 'train2017', 'annotations/instances_train2017.json')
    code, out = _tool(DET, _roots(str(tmp_path / 'coco_mini') + '/', det=True), capsys)
    assert code == 1, out
    listed = [line for line in out.splitlines() if line.startswith('[') and ' problem(s)' not in line
              and 'checked above' not in line]
    assert len(listed) == 3, out
    assert {(line.split()[1], line.split()[2].rstrip(':')) for line in listed} == expected, out
    assert 'check_dataset: 3 problem(s)' in out


def test_train_check_data_stops_before_training(tmp_path, capsys):
    root = Path(generate(str(tmp_path / 'demo'), num_train=3, num_val=2, size=64, verbose=False))
    missing = sorted((root / 'ann_dir' / 'train').iterdir())[0]  # a label map: images are listed from img_dir
    missing.unlink()
    opts = [f'{s}.dataset.data_root={root}/' for s in SPLITS] + ['train_cfg.max_iters=1']
    with pytest.raises(SystemExit) as info:
        load_tool('train').main([str(REPO / 'configs/demo/upernet_revcol_demo.py'), '--check-data', '--work-dir',
                                 str(tmp_path / 'work'), '--cfg-options', *opts])
    assert str(info.value.code).startswith('ERROR: 1 data problem(s)')
    out = capsys.readouterr().out
    assert f'missing          {missing}' in out, out[-2000:]
    assert not (tmp_path / 'work').exists()  # stopped before the runner was built
