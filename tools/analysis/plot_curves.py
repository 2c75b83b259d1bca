"""Validation curves of several training runs side by side, from their mmengine logs (``vis_data/scalars.json``).

Each argument is a work dir (``work_dirs/<config name>``; its latest timestamped run is read) or a run folder. The
metric of every validation (``mIoU`` by default; ``coco/bbox_mAP`` etc. for detection) is plotted against the
iteration, with the training loss in a second panel; a markdown table of the validation values is printed and saved
beside the PNG. Example (the zoo's CamVid acceptance runs, docs/zoo.md)::

    .venv/bin/python tools/analysis/plot_curves.py work_dirs/upernet_revcol_camvid \
        work_dirs/upernet_convnext_t_reduced_camvid work_dirs/upernet_resattnet56_reduced_camvid \
        --labels RevCol ConvNeXt-T-reduced Attention-56-reduced --out docs/zoo_camvid_miou.png
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
from mmrevcol.utils.cli import MissingInputError, run_tool  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('runs', nargs='+', help='work dirs or run folders (with vis_data/scalars.json)')
    p.add_argument('--labels', nargs='+', default=None, help='one label per run (default: the folder names)')
    p.add_argument('--metric', default='mIoU', help='validation key to plot (default: mIoU)')
    p.add_argument('--loss', default='loss', help='training key for the second panel ("" to leave it out)')
    p.add_argument('--out', default='work_dirs/curves.png', help='PNG path (a .md table is written beside it)')
    p.add_argument('--title', default=None)
    return p.parse_args(argv)


def scalars_file(run: str) -> str:
    """``run/vis_data/scalars.json``, or that of the latest timestamped run inside a work dir."""
    direct = osp.join(run, 'vis_data', 'scalars.json')
    if osp.isfile(direct):
        return direct
    found = sorted(glob.glob(osp.join(run, '*', 'vis_data', 'scalars.json')))
    if not found:
        raise MissingInputError(f'no vis_data/scalars.json under {run!r} (a work dir of an mmengine run, or one '
                                'of its timestamped run folders)')
    return found[-1]  # timestamped folder names sort by time


def read_curves(path: str, metric: str, loss: str):
    """``(val, train)``: lists of (step, value) for ``metric`` (validation records) and ``loss`` (training)."""
    val, train = [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            step = rec.get('step', rec.get('iter'))
            if metric in rec:
                val.append((step, float(rec[metric])))
            elif loss and loss in rec:
                train.append((step, float(rec[loss])))
    return val, train


def table(names, curves, metric) -> str:
    steps = sorted({s for val, _ in curves for s, _ in val})
    lines = [f'| run | ' + ' | '.join(f'{metric} @ {s}' for s in steps) + ' |', '|' + '---|' * (len(steps) + 1)]
    for name, (val, _) in zip(names, curves):
        by = dict(val)
        lines.append(f'| {name} | ' + ' | '.join(f'{by[s]:.2f}' if s in by else '' for s in steps) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        raise SystemExit('--labels needs one label per run')
    names = args.labels or [osp.basename(osp.normpath(r)) for r in args.runs]
    curves = [read_curves(scalars_file(r), args.metric, args.loss) for r in args.runs]
    for name, (val, _) in zip(names, curves):
        if not val:
            raise SystemExit(f'{name}: no {args.metric!r} in its log (did validation run?)')

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = 2 if args.loss else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.8), squeeze=False)
    for name, (val, train) in zip(names, curves):
        axes[0][0].plot(*zip(*val), marker='o', label=name)
        if args.loss and train:
            axes[0][1].plot(*zip(*train), label=name, alpha=0.8)
    axes[0][0].set_xlabel('iteration')
    axes[0][0].set_ylabel(f'val {args.metric}')
    axes[0][0].grid(alpha=.3)
    axes[0][0].legend(fontsize=8)
    if args.loss:
        axes[0][1].set_xlabel('iteration')
        axes[0][1].set_ylabel(f'train {args.loss}')
        axes[0][1].grid(alpha=.3)
    if args.title:
        fig.suptitle(args.title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    md = table(names, curves, args.metric)
    with open(osp.splitext(args.out)[0] + '.md', 'w') as f:
        f.write(md)
    print(md)
    print(f'saved {args.out} and {osp.splitext(args.out)[0]}.md')


if __name__ == '__main__':
    sys.exit(run_tool(main))
