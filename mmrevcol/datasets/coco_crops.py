"""Object crops cut from the boxes of a COCO-format detection set: a small real classification set for mmpretrain.

One implementation, two output layouts (both mmpretrain ``CustomDataset`` layouts):

- ``'lists'``: ``OUT/{train,val}/<image id:012d>_<ann id>.jpg``, ``OUT/meta/{train,val}.txt`` (``<file> <label>``
  lines) and ``OUT/meta/classes.txt`` (labels = class names sorted); ``tools/dataset_converters/coco_crops.py``,
  used by ``configs/revcol_cls/``;
- ``'folders'``: ``OUT/{train,val}/<class>/<ann id>.jpg`` (class names with spaces replaced by ``_``; the dataset
  sorts the folders into labels); ``tools/coco_box_crops.py``, used by ``configs/hiri_vit/acceptance/``.

Kept: non-crowd boxes at least ``min_size`` px on both sides, of the chosen classes (named, or the ``num_classes``
most frequent, or every class with at least ``min_per_class`` such boxes), at most ``max_per_class`` per class
taken in ``order`` (``'image'``: by image id then annotation id; ``'annotation'``: by annotation id). Each crop is
its box grown by ``margin`` of its size on every side, clipped to the image. The val split is deterministic:
``split_by='image'`` puts every ``val_every``-th image (by id, starting with the first) in val, so no object is in
both splits; ``split_by='box'`` puts every ``val_every``-th crop of each class (the last of each group) in val.
"""
import json
import os
import os.path as osp
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image

from mmrevcol.utils.errors import ExpectedError

__all__ = ['CropSetError', 'select_boxes', 'crop_box', 'write_crops', 'LAYOUTS']

LAYOUTS = ('lists', 'folders')


class CropSetError(ExpectedError, ValueError):
    """The annotation file yields no crops with these settings, or names unknown classes."""


def _usable(coco: dict, min_size: int, order: str) -> List[dict]:
    key = (lambda a: (a['image_id'], a['id'])) if order == 'image' else (lambda a: a['id'])
    return sorted((a for a in coco['annotations']
                   if not a.get('iscrowd') and a['bbox'][2] >= min_size and a['bbox'][3] >= min_size), key=key)


def select_boxes(coco: dict, min_size: int = 24, classes: Optional[Sequence[str]] = None,
                 num_classes: Optional[int] = None, min_per_class: int = 1, max_per_class: int = 40,
                 order: str = 'image') -> Dict[str, List[dict]]:
    """``{class name: [annotation, ...]}`` of the boxes to crop (see the module doc), classes sorted by name.

    Raises:
        CropSetError: ``classes`` names a category the file does not have.
    """
    if order not in ('image', 'annotation'):
        raise ValueError(f"order must be 'image' or 'annotation', got {order!r}")
    names = {c['id']: c['name'] for c in coco['categories']}
    usable = _usable(coco, min_size, order)
    counts = Counter(a['category_id'] for a in usable)
    if classes is not None:
        unknown = set(classes) - set(names.values())
        if unknown:
            raise CropSetError(f'unknown categories {sorted(unknown)}; the file has {sorted(set(names.values()))}')
        chosen = {c for c, n in names.items() if n in set(classes)}
    elif num_classes is not None:
        chosen = {c for c, _ in counts.most_common(num_classes)}
    else:
        chosen = {c for c, n in counts.items() if n >= min_per_class}
    per_class = defaultdict(list)
    for a in usable:
        c = a['category_id']
        if c in chosen and len(per_class[c]) < max_per_class:
            per_class[c].append(a)
    return {names[c]: per_class[c] for c in sorted(chosen, key=lambda c: names[c])}


def crop_box(bbox: Sequence[float], width: int, height: int, margin: float) -> Tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of a COCO ``[x, y, w, h]`` box grown by ``margin`` per side, clipped."""
    x, y, w, h = bbox
    dx, dy = w * margin, h * margin
    return (max(0, int(x - dx)), max(0, int(y - dy)), min(width, int(round(x + w + dx))),
            min(height, int(round(y + h + dy))))


def _splits(boxes: Dict[str, List[dict]], image_ids: Sequence[int], split_by: str,
            val_every: int) -> Dict[int, str]:
    """``{annotation id: 'train' | 'val'}``."""
    if split_by == 'image':
        rank = {iid: r for r, iid in enumerate(sorted(image_ids))}
        return {a['id']: 'val' if rank[a['image_id']] % val_every == 0 else 'train'
                for anns in boxes.values() for a in anns}
    if split_by == 'box':
        return {a['id']: 'val' if i % val_every == val_every - 1 else 'train'
                for anns in boxes.values() for i, a in enumerate(anns)}
    raise ValueError(f"split_by must be 'image' or 'box', got {split_by!r}")


def write_crops(ann_file: str, img_dir: str, out_dir: str, layout: str = 'lists', split_by: str = 'image',
                min_size: int = 24, classes: Optional[Sequence[str]] = None, num_classes: Optional[int] = None,
                min_per_class: int = 1, max_per_class: int = 40, margin: float = 0.1, val_every: int = 4,
                order: str = 'image') -> dict:
    """Cut the crops and write them in ``layout``.

    Args:
        ann_file: COCO-format instances json.
        img_dir: folder of the images it names.
        out_dir: output folder (created; existing crops are overwritten).
        layout: ``'lists'`` or ``'folders'`` (module doc).
        split_by: ``'image'`` or ``'box'`` (module doc).
        min_size, classes, num_classes, min_per_class, max_per_class, order: the selection (:func:`select_boxes`).
        margin: fraction of the box size added on every side.
        val_every: every n-th image / crop goes to val.

    Returns:
        ``dict(classes=[...], counts={'train': {class: n}, 'val': {class: n}}, val_chance=majority-class rate)``.

    Raises:
        CropSetError: no box passes the selection, or unknown ``classes``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    with open(ann_file) as f:
        coco = json.load(f)
    boxes = select_boxes(coco, min_size, classes, num_classes, min_per_class, max_per_class, order)
    if not any(boxes.values()):
        raise CropSetError(f'{ann_file}: no non-crowd boxes of >= {min_size} px in the chosen classes '
                           f'(min_per_class={min_per_class}); lower --min-size or --min-per-class')
    images = {im['id']: im for im in coco['images']}
    split_of = _splits(boxes, list(images), split_by, val_every)
    names = sorted(boxes)
    label_of = {name: i for i, name in enumerate(names)}
    by_image = defaultdict(list)
    for name, anns in boxes.items():
        for a in anns:
            by_image[a['image_id']].append((name, a))
    counts = {'train': Counter(), 'val': Counter()}
    lines = defaultdict(list)
    for iid in sorted(by_image, key=lambda i: min(a['id'] for _, a in by_image[i]) if order == 'annotation' else i):
        with Image.open(osp.join(img_dir, images[iid]['file_name'])) as img:
            img = img.convert('RGB')
            for name, a in sorted(by_image[iid], key=lambda item: item[1]['id']):
                split = split_of[a['id']]
                if layout == 'lists':
                    rel = f'{split}/{iid:012d}_{a["id"]}.jpg'
                else:
                    rel = f'{split}/{name.replace(" ", "_")}/{a["id"]}.jpg'
                os.makedirs(osp.dirname(osp.join(out_dir, rel)), exist_ok=True)
                img.crop(crop_box(a['bbox'], img.width, img.height, margin)).save(osp.join(out_dir, rel), quality=95)
                lines[split].append((a['id'], f'{rel} {label_of[name]}'))
                counts[split][name if layout == 'lists' else name.replace(' ', '_')] += 1
    if layout == 'lists':
        _write_lists(out_dir, lines, names, by_image)
    val = counts['val']
    return dict(classes=names, counts={k: dict(v) for k, v in counts.items()},
                val_chance=max(val.values()) / sum(val.values()) if val else 0.)


def _write_lists(out_dir: str, lines: dict, names: List[str], by_image: dict) -> None:
    os.makedirs(osp.join(out_dir, 'meta'), exist_ok=True)
    image_of = {a['id']: iid for iid, items in by_image.items() for _, a in items}
    for split in ('train', 'val'):
        ordered = sorted(lines[split], key=lambda item: (image_of[item[0]], item[0]))
        with open(osp.join(out_dir, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(text for _, text in ordered) + '\n')
    with open(osp.join(out_dir, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(names) + '\n')
