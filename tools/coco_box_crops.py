"""A small real classification set: object crops cut from COCO boxes, in mmpretrain's ``CustomDataset`` layout.

Writes ``OUT/{train,val}/<class>/<ann_id>.jpg`` (class folder names with spaces replaced by ``_``) from the boxes
of a COCO-format annotation file: non-crowd boxes of at least ``--min-size`` pixels on both sides, enlarged by
``--context`` on each side, of the ``--num-classes`` most frequent categories (or ``--classes``), at most
``--max-per-class`` per class. Every ``--val-every``-th crop of a class (in annotation-id order) goes to val, so the
split is deterministic. ``OUT`` is meant to be an ignored folder (``data/`` is in .gitignore).

Example (the EMA-distillation acceptance run, ``configs/hiri_vit/acceptance/hiri_vit_ema_distill_coco_crops.py``)::

    .venv/bin/python tools/coco_box_crops.py ../shared/data/coco_mini/annotations/instances_train2017.json \
        ../shared/data/coco_mini/train2017 data/coco_crops
"""
import argparse
import json
import os
import os.path as osp
from collections import Counter, defaultdict

from PIL import Image


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('ann_file', help='COCO-format instances json')
    p.add_argument('img_dir', help='folder of the images named in ann_file')
    p.add_argument('out_dir', help='output folder (created; existing crops are overwritten)')
    p.add_argument('--classes', nargs='+', default=None, help='category names (default: the most frequent)')
    p.add_argument('--num-classes', type=int, default=4)
    p.add_argument('--min-size', type=int, default=32, help='minimum box width and height in pixels')
    p.add_argument('--max-per-class', type=int, default=40)
    p.add_argument('--context', type=float, default=0.1, help='enlarge each box by this fraction per side')
    p.add_argument('--val-every', type=int, default=4, help='every n-th crop of a class goes to val')
    return p.parse_args(argv)


def select_boxes(coco: dict, classes=None, num_classes=4, min_size=32, max_per_class=40):
    """``{class name: [annotation, ...]}`` of the usable boxes, in annotation-id order."""
    names = {c['id']: c['name'] for c in coco['categories']}
    usable = [a for a in sorted(coco['annotations'], key=lambda a: a['id'])
              if not a.get('iscrowd') and a['bbox'][2] >= min_size and a['bbox'][3] >= min_size]
    if classes is None:
        classes = [names[c] for c, _ in Counter(a['category_id'] for a in usable).most_common(num_classes)]
    unknown = set(classes) - set(names.values())
    if unknown:
        raise ValueError(f'unknown categories {sorted(unknown)}')
    per_class = defaultdict(list)
    for a in usable:
        name = names[a['category_id']]
        if name in classes and len(per_class[name]) < max_per_class:
            per_class[name].append(a)
    return {c: per_class[c] for c in classes}


def crop_box(img: Image.Image, bbox, context: float) -> Image.Image:
    x, y, w, h = bbox
    dx, dy = w * context, h * context
    left, top = max(0, int(x - dx)), max(0, int(y - dy))
    right, bottom = min(img.width, int(round(x + w + dx))), min(img.height, int(round(y + h + dy)))
    return img.crop((left, top, right, bottom))


def build(ann_file, img_dir, out_dir, classes=None, num_classes=4, min_size=32, max_per_class=40, context=0.1,
          val_every=4) -> dict:
    """Write the crops; returns ``{split: {class: count}}``."""
    with open(ann_file) as f:
        coco = json.load(f)
    files = {im['id']: im['file_name'] for im in coco['images']}
    boxes = select_boxes(coco, classes, num_classes, min_size, max_per_class)
    counts = {'train': Counter(), 'val': Counter()}
    images = {}
    for name, anns in boxes.items():
        folder = name.replace(' ', '_')
        for i, a in enumerate(anns):
            split = 'val' if i % val_every == val_every - 1 else 'train'
            path = osp.join(img_dir, files[a['image_id']])
            if path not in images:
                images[path] = Image.open(path).convert('RGB')
            os.makedirs(osp.join(out_dir, split, folder), exist_ok=True)
            crop_box(images[path], a['bbox'], context).save(osp.join(out_dir, split, folder, f"{a['id']}.jpg"),
                                                             quality=95)
            counts[split][folder] += 1
    return {k: dict(v) for k, v in counts.items()}


def main(argv=None):
    args = parse_args(argv)
    counts = build(args.ann_file, args.img_dir, args.out_dir, args.classes, args.num_classes, args.min_size,
                   args.max_per_class, args.context, args.val_every)
    for split, c in counts.items():
        print(f'{split}: {sum(c.values())} crops {c}')
    return counts


if __name__ == '__main__':
    main()
