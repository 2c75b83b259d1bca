"""Cut object crops out of a COCO-format detection set into an mmpretrain classification set (real images for a
small pre-training run, e.g. of a reduced RevCol classifier).

Usage::

    python tools/dataset_converters/coco_crops.py ../shared/data/coco_mini data/coco_mini_crops

Writes ``DST/{train,val}/<image id>_<ann id>.jpg``, ``DST/meta/{train,val}.txt`` (``<file> <label>`` lines, mmpretrain
``CustomDataset`` ann files) and ``DST/meta/classes.txt``. Each crop is the box grown by ``--margin`` on every side
(clipped to the image). Kept: non-crowd boxes of at least ``--min-size`` px on both sides, of the categories with at
least ``--min-per-class`` such boxes; at most ``--max-per-class`` per category (so one class does not dominate). The
train/val split is by *image* (every ``--val-every``-th image id goes to val), so no object is seen in both.
Prints the class counts and the chance level (majority-class rate) of the val split.
"""
import argparse
import json
import os
import os.path as osp
from collections import Counter, defaultdict

from PIL import Image


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='COCO-format root with annotations/instances_<split>.json and <split>/ images')
    p.add_argument('dst', help='output folder (keep it out of git, e.g. data/coco_mini_crops)')
    p.add_argument('--split', default='train2017')
    p.add_argument('--min-size', type=int, default=24)
    p.add_argument('--min-per-class', type=int, default=10)
    p.add_argument('--max-per-class', type=int, default=40)
    p.add_argument('--margin', type=float, default=0.1, help='fraction of the box size added on every side')
    p.add_argument('--val-every', type=int, default=4, help='image i goes to val when i %% val_every == 0')
    return p.parse_args(argv)


def select(coco: dict, min_size: int, min_per_class: int, max_per_class: int):
    """The annotations to crop (sorted by image then annotation id) and the kept category names."""
    names = {c['id']: c['name'] for c in coco['categories']}
    good = sorted((a for a in coco['annotations']
                   if not a.get('iscrowd') and a['bbox'][2] >= min_size and a['bbox'][3] >= min_size),
                  key=lambda a: (a['image_id'], a['id']))
    counts = Counter(a['category_id'] for a in good)
    keep = sorted((c for c, n in counts.items() if n >= min_per_class), key=lambda c: names[c])
    taken = Counter()
    chosen = []
    for a in good:
        c = a['category_id']
        if c in keep and taken[c] < max_per_class:
            taken[c] += 1
            chosen.append(a)
    return chosen, [names[c] for c in keep], {c: i for i, c in enumerate(keep)}


def crop_box(bbox, width: int, height: int, margin: float):
    x, y, w, h = bbox
    dx, dy = w * margin, h * margin
    return (max(0, int(x - dx)), max(0, int(y - dy)), min(width, int(round(x + w + dx))),
            min(height, int(round(y + h + dy))))


def convert(src: str, dst: str, split='train2017', min_size=24, min_per_class=10, max_per_class=40, margin=0.1,
            val_every=4) -> dict:
    with open(osp.join(src, 'annotations', f'instances_{split}.json')) as f:
        coco = json.load(f)
    anns, classes, label_of = select(coco, min_size, min_per_class, max_per_class)
    if not anns:
        raise SystemExit(f'no boxes of >= {min_size} px in classes with >= {min_per_class} of them')
    images = {im['id']: im for im in coco['images']}
    image_rank = {iid: r for r, iid in enumerate(sorted(images))}
    lines = defaultdict(list)
    by_image = defaultdict(list)
    for a in anns:
        by_image[a['image_id']].append(a)
    for sub in ('train', 'val', 'meta'):
        os.makedirs(osp.join(dst, sub), exist_ok=True)
    for iid, group in sorted(by_image.items()):
        info = images[iid]
        subset = 'val' if image_rank[iid] % val_every == 0 else 'train'
        with Image.open(osp.join(src, split, info['file_name'])) as img:
            img = img.convert('RGB')
            for a in group:
                name = f'{subset}/{iid:012d}_{a["id"]}.jpg'
                img.crop(crop_box(a['bbox'], img.width, img.height, margin)).save(osp.join(dst, name), quality=95)
                lines[subset].append(f'{name} {label_of[a["category_id"]]}')
    for subset in ('train', 'val'):
        with open(osp.join(dst, 'meta', f'{subset}.txt'), 'w') as f:
            f.write('\n'.join(lines[subset]) + '\n')
    with open(osp.join(dst, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(classes) + '\n')
    stats = {s: Counter(int(line.split()[-1]) for line in lines[s]) for s in ('train', 'val')}
    chance = max(stats['val'].values()) / max(1, sum(stats['val'].values()))
    return dict(classes=classes, train=sum(stats['train'].values()), val=sum(stats['val'].values()),
                per_class={c: (stats['train'][i], stats['val'][i]) for i, c in enumerate(classes)},
                val_chance=chance)


def main(argv=None):
    args = parse_args(argv)
    out = convert(args.src, args.dst, args.split, args.min_size, args.min_per_class, args.max_per_class,
                  args.margin, args.val_every)
    print(f'{len(out["classes"])} classes, {out["train"]} train / {out["val"]} val crops in {args.dst}')
    for c, (tr, va) in out['per_class'].items():
        print(f'  {c:<16} train {tr:>4}  val {va:>4}')
    print(f'chance (majority class of val): {100 * out["val_chance"]:.1f}% top-1')


if __name__ == '__main__':
    main()
