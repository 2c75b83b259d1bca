"""Cut object crops out of a COCO-format detection set into an mmpretrain classification set (real images for a
small pre-training run, e.g. of a reduced RevCol classifier).

Usage::

    python tools/dataset_converters/coco_crops.py ../shared/data/coco_mini data/coco_mini_crops
    # the class-folder layout of tools/coco_box_crops.py (4 most frequent classes, split by box)
    python tools/dataset_converters/coco_crops.py ../shared/data/coco_mini data/coco_crops --layout folders \\
        --num-classes 4 --split-by box --order annotation --min-size 32

Default layout (``lists``): ``DST/{train,val}/<image id>_<ann id>.jpg``, ``DST/meta/{train,val}.txt``
(``<file> <label>`` lines, mmpretrain ``CustomDataset`` ann files) and ``DST/meta/classes.txt``. Each crop is the box
grown by ``--margin`` on every side (clipped to the image). Kept: non-crowd boxes of at least ``--min-size`` px on
both sides, of the categories with at least ``--min-per-class`` such boxes (or ``--classes`` / the
``--num-classes`` most frequent); at most ``--max-per-class`` per category (so one class does not dominate). The
train/val split is by *image* (every ``--val-every``-th image id goes to val), so no object is seen in both.
Prints the class counts and the chance level (majority-class rate) of the val split. The implementation is
:mod:`mmrevcol.datasets.coco_crops`.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
from mmrevcol.datasets.coco_crops import LAYOUTS, write_crops  # noqa: E402
from mmrevcol.utils.cli import require_path, run_tool  # noqa: E402


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
    p.add_argument('--classes', nargs='+', default=None, help='category names (default: by --min-per-class)')
    p.add_argument('--num-classes', type=int, default=None, help='the N most frequent categories instead')
    p.add_argument('--layout', choices=LAYOUTS, default='lists',
                   help='lists: meta/{train,val}.txt ann files; folders: one folder per class')
    p.add_argument('--split-by', choices=['image', 'box'], default='image',
                   help='val = every n-th image (default) or every n-th crop of each class')
    p.add_argument('--order', choices=['image', 'annotation'], default='image',
                   help='order in which boxes fill --max-per-class (default: by image id)')
    return p.parse_args(argv)


def convert(src: str, dst: str, split='train2017', min_size=24, min_per_class=10, max_per_class=40, margin=0.1,
            val_every=4, **options) -> dict:
    """``dict(classes, train, val, per_class={class: (train, val)}, val_chance)`` of the written set."""
    ann_file = require_path(osp.join(src, 'annotations', f'instances_{split}.json'), 'COCO annotation file',
                            'SRC is the root holding annotations/ and the image folder')
    img_dir = require_path(osp.join(src, split), 'image folder')
    out = write_crops(ann_file, img_dir, dst, min_size=min_size, min_per_class=min_per_class,
                      max_per_class=max_per_class, margin=margin, val_every=val_every, **options)
    train, val = out['counts']['train'], out['counts']['val']
    keys = sorted(set(train) | set(val))
    return dict(classes=out['classes'], train=sum(train.values()), val=sum(val.values()),
                per_class={c: (train.get(c, 0), val.get(c, 0)) for c in keys}, val_chance=out['val_chance'])


def main(argv=None):
    args = parse_args(argv)
    out = convert(args.src, args.dst, args.split, args.min_size, args.min_per_class, args.max_per_class,
                  args.margin, args.val_every, classes=args.classes, num_classes=args.num_classes,
                  layout=args.layout, split_by=args.split_by, order=args.order)
    print(f'{len(out["classes"])} classes, {out["train"]} train / {out["val"]} val crops in {args.dst}')
    for c, (tr, va) in out['per_class'].items():
        print(f'  {c:<16} train {tr:>4}  val {va:>4}')
    print(f'chance (majority class of val): {100 * out["val_chance"]:.1f}% top-1')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
