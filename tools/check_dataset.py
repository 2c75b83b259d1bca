# Copyright (c) mmrevcol. Apache-2.0.
"""Pre-flight check of a config's datasets, read the way the config's pipeline reads them: missing, unreadable,
truncated, EXIF-rotated, size-mismatched images; unknown category ids, empty boxes and masks, ignored polygons;
out-of-range or multi-channel label maps; images too small for the model's stride or too large to decode. One
line per file, a summary of the annotations training would silently lose (mmrevcol/utils/dataset_check.py says
what each kind means, docs/robustness.md which are errors).

Examples::

    python tools/check_dataset.py configs/acceptance/upernet_revcol_camvid.py
    python tools/check_dataset.py configs/acceptance/cascade_revcol_coco_mini_person.py --splits train --jobs 4 \\
        --cfg-options train_dataloader.dataset.data_root=/data/coco_mini/

Exit status: 0 no errors (warnings are listed), 1 errors found, 2 bad arguments. ``tools/train.py --check-data``
runs the same check on the train and val sets before training.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

from mmengine.config import Config  # noqa: E402

from mmrevcol.utils.cli import LiteralDictAction, require_path, run_tool  # noqa: E402
from mmrevcol.utils.dataset_check import (DEFAULT_MAX_IMAGE_MB, DEFAULT_STRIDE, SPLITS, check_config,  # noqa: E402
                                          format_report)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Check the files of a config's datasets before training")
    parser.add_argument('config', help='train/test config file')
    parser.add_argument('--splits', nargs='+', choices=SPLITS, default=list(SPLITS),
                        help='which <split>_dataloader datasets to check (default: all; each distinct one once)')
    parser.add_argument('--jobs', type=int, default=1, help='images decoded in parallel (threads)')
    parser.add_argument('--stride', type=int, default=DEFAULT_STRIDE,
                        help="the model's deepest stride: images shorter than this after the pipeline's resize are "
                        f'too small (default {DEFAULT_STRIDE})')
    parser.add_argument('--max-image-mb', type=float, default=DEFAULT_MAX_IMAGE_MB,
                        help='decoded size (uint8, MiB) above which an image is too large for the data loader '
                        f'(default {DEFAULT_MAX_IMAGE_MB})')
    parser.add_argument('--cfg-options', nargs='+', action=LiteralDictAction,
                        help='override settings of the config, e.g. train_dataloader.dataset.data_root=DIR/')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(require_path(args.config, 'config file'))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    problems = check_config(cfg, splits=args.splits, jobs=args.jobs, stride=args.stride,
                            max_image_mb=args.max_image_mb)
    print(format_report(problems), flush=True)
    return 1 if any(p.severity == 'error' for p in problems) else 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
