# Copyright (c) mmrevcol. Apache-2.0.
"""Pre-flight check of a config's datasets: missing, unreadable, truncated, empty-annotation, out-of-bounds-box and
size-mismatched files, listed before any training starts (mmrevcol/utils/dataset_check.py says what each means).

Examples::

    python tools/check_dataset.py configs/acceptance/upernet_revcol_camvid.py
    python tools/check_dataset.py configs/acceptance/cascade_revcol_coco_mini_person.py --splits train --jobs 4 \\
        --cfg-options train_dataloader.dataset.data_root=/data/coco_mini/

Exit status: 0 clean, 1 problems found (one line each), 2 bad arguments. ``tools/train.py --check-data`` runs
the same check on the train and val sets before training.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

from mmengine.config import Config  # noqa: E402

from mmrevcol.utils.cli import LiteralDictAction  # noqa: E402
from mmrevcol.utils.dataset_check import SPLITS, check_config, format_report  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Check the files of a config's datasets before training")
    parser.add_argument('config', help='train/test config file')
    parser.add_argument('--splits', nargs='+', choices=SPLITS, default=list(SPLITS),
                        help='which <split>_dataloader datasets to check (default: all; each distinct one once)')
    parser.add_argument('--jobs', type=int, default=1, help='images decoded in parallel (threads)')
    parser.add_argument('--cfg-options', nargs='+', action=LiteralDictAction,
                        help='override settings of the config, e.g. train_dataloader.dataset.data_root=DIR/')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    problems = check_config(cfg, splits=args.splits, jobs=args.jobs)
    print(format_report(problems), flush=True)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
