"""Pre-flight check of the datasets a config trains and evaluates on (``tools/check_dataset.py``, ``--check-data``).

A truncated JPEG or a missing file is otherwise found when the data loader reaches it, possibly hours into a run
(or never: OpenCV decodes a truncated JPEG into a partly grey image with only a warning). This reads every file
once and lists, per problem, the kind and the file:

* ``missing``: an image or label map named by the dataset is not there;
* ``unreadable``: it does not decode (or the annotation file does not parse);
* ``truncated``: the image data stops early;
* ``empty-annotation``: a COCO image without any annotation, or a label map holding only ``ignore_index``;
* ``box-outside``: a COCO box not inside its image, or of zero size;
* ``size-mismatch``: an image whose size differs from its COCO entry or from its label map.

COCO-style mmdet datasets are read from their json (so boxes that mmdet would silently drop are seen too), other
mmdet datasets through their parsed ``data_list``; mmseg datasets through their ``data_list`` (image + label map).
"""
import copy
import json
import os.path as osp
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageFile

__all__ = ['SPLITS', 'Problem', 'check_config', 'check_dataset_cfg', 'format_report']

SPLITS = ('train', 'val', 'test')


@dataclass(frozen=True)
class Problem:
    split: str
    kind: str
    path: str
    detail: str = ''

    def __str__(self) -> str:
        return f'[{self.split}] {self.kind:<16} {self.path}' + (f': {self.detail}' if self.detail else '')


# ---------------------------------------------------------------------------------------------------------------
def read_image(path: str, as_array: bool = False) -> Tuple[Optional[str], str, Optional[tuple], Optional[np.ndarray]]:
    """``(kind, detail, (width, height), array)``; ``kind`` is None when ``path`` decodes completely."""
    if not osp.isfile(path):
        return 'missing', '', None, None
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # some libraries switch it on; a truncated file must raise here
    try:
        with Image.open(path) as img:
            img.load()
            return None, '', img.size, (np.asarray(img) if as_array else None)
    except OSError as e:
        if 'truncated' in str(e) or 'broken data stream' in str(e):
            return 'truncated', str(e), None, None
        return 'unreadable', str(e) or type(e).__name__, None, None
    except Exception as e:  # noqa: BLE001  any decoder error means the loader would fail on it
        return 'unreadable', f'{type(e).__name__}: {e}', None, None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _map(function, items: Sequence, jobs: int) -> List:
    if jobs <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(jobs) as pool:  # decoding releases the GIL
        return list(pool.map(function, items))


# ---------------------------------------------------------------------------------------------------------------
def _check_coco(split: str, ann_file: str, img_dir: str, jobs: int) -> List[Problem]:
    try:
        with open(ann_file) as f:
            coco = json.load(f)
        images, annotations = coco['images'], coco.get('annotations', [])
    except FileNotFoundError:
        return [Problem(split, 'missing', ann_file, 'annotation file')]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [Problem(split, 'unreadable', ann_file, f'annotation file: {type(e).__name__}: {e}')]
    by_image: Dict[int, List[dict]] = {}
    for ann in annotations:
        by_image.setdefault(ann.get('image_id'), []).append(ann)

    def check(info: dict) -> List[Problem]:
        path = osp.join(img_dir, info['file_name'])
        out = []
        kind, detail, size, _ = read_image(path)
        if kind:
            out.append(Problem(split, kind, path, detail))
        elif size != (info.get('width'), info.get('height')):
            out.append(Problem(split, 'size-mismatch', path, f'image is {size[0]}x{size[1]}, annotation says '
                               f'{info.get("width")}x{info.get("height")} (w x h)'))
        anns = by_image.get(info['id'], [])
        if not anns:
            out.append(Problem(split, 'empty-annotation', path, f'image id {info["id"]} has no annotation'))
        width, height = info.get('width'), info.get('height')
        for ann in anns:
            x, y, w, h = ann['bbox']
            if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
                out.append(Problem(split, 'box-outside', path, f'annotation {ann.get("id")} bbox [x,y,w,h]='
                                   f'{ann["bbox"]} not inside the {width}x{height} image'))
        return out

    return [p for problems in _map(check, images, jobs) for p in problems]


def _infos(dataset) -> List[dict]:
    # data_list is emptied once serialized (serialize_data=True, the default): read it back per index
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def _check_det_data_list(split: str, dataset, jobs: int) -> List[Problem]:
    def check(info: dict) -> List[Problem]:
        path = info['img_path']
        kind, detail, size, _ = read_image(path)
        out = [Problem(split, kind, path, detail)] if kind else []
        instances = info.get('instances', [])
        if not instances:
            out.append(Problem(split, 'empty-annotation', path, 'no instances'))
        if size is not None:
            width, height = size
            for inst in instances:
                x1, y1, x2, y2 = inst['bbox']
                if x2 <= x1 or y2 <= y1 or x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                    out.append(Problem(split, 'box-outside', path, f'bbox [x1,y1,x2,y2]={inst["bbox"]} not inside '
                                       f'the {width}x{height} image'))
        return out

    return [p for problems in _map(check, _infos(dataset), jobs) for p in problems]


def _check_seg(split: str, dataset, jobs: int) -> List[Problem]:
    ignore_index = dataset.ignore_index if hasattr(dataset, 'ignore_index') else 255

    def check(info: dict) -> List[Problem]:
        out = []
        kind, detail, size, _ = read_image(info['img_path'])
        if kind:
            out.append(Problem(split, kind, info['img_path'], detail))
        seg = info.get('seg_map_path')
        if seg is None:
            return out
        kind, detail, label_size, values = read_image(seg, as_array=True)
        if kind:
            out.append(Problem(split, kind, seg, detail))
            return out
        if size is not None and size != label_size:
            out.append(Problem(split, 'size-mismatch', seg, f'label map is {label_size[0]}x{label_size[1]}, image '
                               f'{info["img_path"]} is {size[0]}x{size[1]} (w x h)'))
        if info.get('reduce_zero_label', False):
            values = np.where(values == 0, 255, values.astype(np.int64) - 1)
        if values.size and (values == ignore_index).all():
            out.append(Problem(split, 'empty-annotation', seg, f'every pixel is ignore_index={ignore_index}'))
        return out

    return [p for problems in _map(check, _infos(dataset), jobs) for p in problems]


# ---------------------------------------------------------------------------------------------------------------
def _leaf_datasets(dataset_cfg) -> Iterable[dict]:
    """The datasets inside wrappers (RepeatDataset, ClassBalancedDataset, ConcatDataset, MultiImageMixDataset)."""
    if isinstance(dataset_cfg, (list, tuple)):
        for item in dataset_cfg:
            yield from _leaf_datasets(item)
    elif isinstance(dataset_cfg, dict):
        if 'datasets' in dataset_cfg:
            yield from _leaf_datasets(dataset_cfg['datasets'])
        elif 'dataset' in dataset_cfg:
            yield from _leaf_datasets(dataset_cfg['dataset'])
        else:
            yield dataset_cfg


def _build(dataset_cfg: dict, lazy: bool):
    from mmengine.registry import DATASETS
    # a deep copy: datasets join data_root into the data_prefix dict they are given, in place
    return DATASETS.build(dict(copy.deepcopy(dataset_cfg), pipeline=[], lazy_init=lazy))  # no transforms


def check_dataset_cfg(split: str, dataset_cfg: dict, jobs: int = 1,
                      seen: Optional[set] = None) -> Tuple[List[Problem], str]:
    """Check one (unwrapped) dataset config; returns the problems and a one-line summary of what was read.

    ``seen`` holds the (ann_file, data_prefix) already checked, so a set shared by splits is read once.
    """
    dataset = _build(dataset_cfg, lazy=True)  # resolves data_root into ann_file / data_prefix, parses nothing
    name = type(dataset).__name__
    ann_file = getattr(dataset, 'ann_file', '') or ''
    prefix = dict(getattr(dataset, 'data_prefix', {}) or {})
    key = (ann_file, repr(sorted(prefix.items())))
    where = ann_file or ', '.join(f'{k}={v}' for k, v in prefix.items())
    if seen is not None:
        if key in seen:
            return [], f'[{split}] {name}: {where}: checked above'
        seen.add(key)
    try:
        from mmdet.datasets import CocoDataset
    except ImportError:  # mmseg-only installs
        CocoDataset = ()
    if isinstance(dataset, CocoDataset):
        return _check_coco(split, ann_file, prefix.get('img', ''), jobs), f'[{split}] {name}: {where}'
    try:
        dataset = _build(dataset_cfg, lazy=False)
    except FileNotFoundError as e:
        return [Problem(split, 'missing', str(e.filename or e), 'while listing the dataset')], f'[{split}] {name}'
    except Exception as e:  # noqa: BLE001
        return [Problem(split, 'unreadable', where, f'{type(e).__name__}: {e}')], f'[{split}] {name}'
    summary = f'[{split}] {name}: {where} ({len(dataset)} samples)'
    if 'seg_map_path' in prefix or (len(dataset) and 'seg_map_path' in dataset.get_data_info(0)):
        return _check_seg(split, dataset, jobs), summary
    return _check_det_data_list(split, dataset, jobs), summary


def check_config(cfg, splits: Sequence[str] = SPLITS, jobs: int = 1, log=print) -> List[Problem]:
    """Check the datasets of ``cfg``'s ``<split>_dataloader`` for each split; each distinct dataset once."""
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    problems, seen = [], set()
    for split in splits:
        loader = cfg.get(f'{split}_dataloader', None)
        if not loader:
            continue
        for dataset_cfg in _leaf_datasets(loader.get('dataset', None)):
            found, summary = check_dataset_cfg(split, dataset_cfg, jobs, seen)
            log(f'{summary}: {len(found)} problem(s)' if found else
                summary if summary.endswith('checked above') else f'{summary}: clean')
            problems += found
    return problems


def format_report(problems: List[Problem]) -> str:
    if not problems:
        return 'check_dataset: clean (every file present, readable, complete; every box inside its image)'
    kinds: Dict[str, int] = {}
    for p in problems:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    counts = ', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))
    return '\n'.join(map(str, problems)) + f'\ncheck_dataset: {len(problems)} problem(s): {counts}'
