"""The embedded demo dataset: deterministic, consistent COCO instances and mmseg label maps."""
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from mmrevcol.demo_data import CLASSES, generate


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob('*') if p.is_file() and p.name != 'meta.json'):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_generate_layout_and_consistency(tmp_path):
    root = Path(generate(str(tmp_path / 'demo'), num_train=6, num_val=3, size=96, seed=1, verbose=False))
    for split, n in (('train', 6), ('val', 3)):
        imgs = sorted((root / 'img_dir' / split).glob('*.png'))
        anns = sorted((root / 'ann_dir' / split).glob('*.png'))
        assert len(imgs) == len(anns) == n
        coco = json.loads((root / 'annotations' / f'instances_{split}.json').read_text())
        assert [c['name'] for c in coco['categories']] == list(CLASSES)
        assert len(coco['images']) == n and coco['annotations']
        for img_info in coco['images']:
            img = cv2.imread(str(root / 'img_dir' / split / img_info['file_name']))
            label = cv2.imread(str(root / 'ann_dir' / split / img_info['file_name']), cv2.IMREAD_UNCHANGED)
            assert img.shape == (96, 96, 3) and label.shape == (96, 96) and label.dtype == np.uint8
            assert label.max() <= len(CLASSES)
            # every instance's polygon mask lies on pixels of its class in the label map
            for ann in (a for a in coco['annotations'] if a['image_id'] == img_info['id']):
                rles = mask_utils.frPyObjects(ann['segmentation'], 96, 96)
                m = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
                assert m.sum() > 0
                assert (label[m] == ann['category_id']).mean() > 0.8
                x, y, w, h = ann['bbox']
                assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 96 and y + h <= 96


def test_generate_is_deterministic_and_cached(tmp_path):
    a = Path(generate(str(tmp_path / 'a'), num_train=3, num_val=2, size=64, seed=3, verbose=False))
    b = Path(generate(str(tmp_path / 'b'), num_train=3, num_val=2, size=64, seed=3, verbose=False))
    assert _digest(a) == _digest(b)
    c = Path(generate(str(tmp_path / 'c'), num_train=3, num_val=2, size=64, seed=4, verbose=False))
    assert _digest(a) != _digest(c)
    # same arguments again: nothing rewritten
    stamp = (a / 'img_dir' / 'train' / '00000.png').stat().st_mtime_ns
    generate(str(a), num_train=3, num_val=2, size=64, seed=3, verbose=False)
    assert (a / 'img_dir' / 'train' / '00000.png').stat().st_mtime_ns == stamp


# ----------------------------------------------------------------------------------------------------------------
# the demo's numbers (tools/demo.py): what the README states is what the demo prints beside its result
def _demo_tool():
    from tools_loader import load_tool
    return load_tool('demo')


def test_readme_states_the_demos_expected_ranges():
    demo = _demo_tool()
    readme = (Path(__file__).resolve().parents[1] / 'README.md').read_text()
    for task, metrics in demo.EXPECTED.items():
        for _, label, low, high in metrics:
            assert low <= high
            assert f'{label} {low:.1f}-{high:.1f}' in readme, (task, label)


def test_demo_prints_the_readme_range_beside_its_result():
    demo = _demo_tool()
    (key, label, low, high), = demo.EXPECTED['seg']
    inside = demo.expectation('seg', {key: (low + high) / 2}, full_run=True)
    assert f'{label} {low:.1f}-{high:.1f}' in inside and 'OUTSIDE' not in inside
    outside = demo.expectation('seg', {key: high + 5}, full_run=True)
    assert f'(got {high + 5:.1f}: OUTSIDE)' in outside
    assert 'default run' in demo.expectation('seg', {key: 0.}, full_run=False)
    assert demo.parse_args([]).threads == demo.DEFAULT_THREADS == 2  # not the machine's load
