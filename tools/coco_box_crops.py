"""A small real classification set: object crops cut from COCO boxes, in mmpretrain's ``CustomDataset`` class-folder
layout. An alias of ``tools/dataset_converters/coco_crops.py --layout folders`` with this tool's arguments and
defaults (both run :mod:`mmrevcol.datasets.coco_crops`).

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
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))
from mmrevcol.datasets.coco_crops import write_crops  # noqa: E402
from mmrevcol.utils.cli import require_path, run_tool  # noqa: E402


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


def build(ann_file, img_dir, out_dir, classes=None, num_classes=4, min_size=32, max_per_class=40, context=0.1,
          val_every=4) -> dict:
    """Write the crops; returns ``{split: {class folder: count}}``."""
    require_path(ann_file, 'COCO annotation file')
    require_path(img_dir, 'image folder')
    return write_crops(ann_file, img_dir, out_dir, layout='folders', split_by='box', order='annotation',
                       min_size=min_size, classes=classes, num_classes=None if classes else num_classes,
                       max_per_class=max_per_class, margin=context, val_every=val_every)['counts']


def main(argv=None):
    args = parse_args(argv)
    counts = build(args.ann_file, args.img_dir, args.out_dir, args.classes, args.num_classes, args.min_size,
                   args.max_per_class, args.context, args.val_every)
    for split, c in counts.items():
        print(f'{split}: {sum(c.values())} crops {c}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
