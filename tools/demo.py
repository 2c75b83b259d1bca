"""The embedded demo: generate the synthetic shapes dataset, train a small RevCol Cascade Mask R-CNN (mmdet) and a
small RevCol UPerNet (mmseg) from scratch on CPU, evaluate, and print COCO bbox/segm AP and mIoU.

    bash tools/run_demo.sh                      # sets up .venv first, then runs this
    .venv/bin/python tools/demo.py              # both tasks
    .venv/bin/python tools/demo.py --only seg --iters 100
    .venv/bin/python tools/demo.py --spread     # the README's range: 1 and 2 threads x AVX-512 / AVX2 kernels

Both trainings go through mmengine's Runner with the configs in configs/demo/ (exactly what tools/train.py does);
logs and checkpoints land in work_dirs/demo/. Expect a few minutes per task on 2 CPU cores.

The metrics depend on the floating-point rounding of a few thousand training steps, hence on how many threads
split each reduction and on which CPU kernels run. The demo pins what it can: always ``--threads`` threads (2 by
default, whatever the machine's load or core count) and the seed of the configs; the rest (which vector ISA the
CPU's kernels use) is measured: the summary prints the range the README states beside the result.
"""
import os

# Before torch is imported: on a busy CPU, OpenMP threads that spin while waiting make every op several times
# slower (measured here: 0.5 s vs 4-10 s per Cascade step). PASSIVE threads yield instead.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import argparse  # noqa: E402
import os.path as osp  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, ROOT)
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmrevcol.demo_data import DEFAULT_ROOT, generate  # noqa: E402
from mmrevcol.utils.cli import run_tool  # noqa: E402
from mmrevcol.utils.profiling import describe_device  # noqa: E402

TASKS = {
    'det': ('configs/demo/cascade_revcol_demo.py', 'RevCol Cascade Mask R-CNN (mmdet)'),
    'seg': ('configs/demo/upernet_revcol_demo.py', 'RevCol UPerNet (mmseg)'),
}
DEFAULT_THREADS = 2
#: The settings whose spread the README states: (threads, ONEDNN_MAX_CPU_ISA or None for the CPU's best).
SPREAD = [(2, None), (1, None), (2, 'AVX2'), (1, 'AVX2')]
#: What the README states for the full default run ("Results measured here"): (metric, low, high) in percent, the
#: range of two rounds of ``--spread`` settings (1 and 2 threads, AVX-512 / AVX2 kernels; Intel Xeon, AVX-512) on
#: two versions of the code (README table). tests/test_demo_data.py checks that the README shows these numbers.
EXPECTED = {
    'det': [('coco/bbox_mAP', 'bbox AP', 8.0, 20.5), ('coco/segm_mAP', 'segm AP', 7.2, 17.9)],
    'seg': [('mIoU', 'mIoU', 29.8, 39.8)],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--only', choices=sorted(TASKS), help='run one task only')
    p.add_argument('--iters', type=int, help='training iterations (default: the configs\', 300)')
    p.add_argument('--data-root', default=DEFAULT_ROOT, help=f'dataset folder (default {DEFAULT_ROOT})')
    p.add_argument('--work-dir', default='work_dirs/demo', help='logs and checkpoints (default work_dirs/demo)')
    p.add_argument('--threads', type=int, default=DEFAULT_THREADS,
                   help=f'torch intra-op threads (default {DEFAULT_THREADS} on any machine: the metrics depend on '
                   'the thread count, so it does not follow the load or the cores)')
    p.add_argument('--log-interval', type=int, default=10, help='print the training log every N iters')
    p.add_argument('--json', default=None, help='also write the metrics to this JSON file')
    p.add_argument('--spread', action='store_true',
                   help='run the demo once per setting of SPREAD (threads x oneDNN ISA, one process each, in turn) '
                   'and print the range of each metric: what the README and EXPECTED state')
    return p.parse_args(argv)


def build_cfg(config: str, args) -> Config:
    cfg = Config.fromfile(osp.join(ROOT, config))
    root = args.data_root.rstrip('/') + '/'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = root
    if cfg.get('default_scope') == 'mmdet':
        cfg.val_evaluator.ann_file = root + 'annotations/instances_val.json'
        cfg.test_evaluator = cfg.val_evaluator
    if args.iters is not None:
        it = args.iters
        cfg.train_cfg.max_iters = it
        cfg.train_cfg.val_interval = it
        cfg.default_hooks.checkpoint.interval = it
        warm = max(1, min(30, it // 10))
        for sched in cfg.param_scheduler:
            if sched.type == 'LinearLR':
                sched.end = warm
            elif sched.type == 'CosineAnnealingLR':
                sched.T_max, sched.end = it, it
            elif sched.type == 'PolyLR':
                sched.begin, sched.end = warm, it
    cfg.default_hooks.logger.interval = args.log_interval
    cfg.work_dir = osp.join(args.work_dir, osp.splitext(osp.basename(config))[0])
    cfg.launcher = 'none'  # the run's safety hooks and the anchor filter come from the configs, as in tools/train.py
    return cfg


def run_task(name: str, args) -> dict:
    config, title = TASKS[name]
    cfg = build_cfg(config, args)
    print(f'\n=== {title}: training {cfg.train_cfg.max_iters} iterations from scratch ({config}) ===', flush=True)
    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()  # validates once at the end (val_interval = max_iters)
    train_time = time.time() - start
    metrics = runner.test()
    return dict(title=title, config=config, metrics=metrics, seconds=time.time() - start, train_seconds=train_time,
                work_dir=cfg.work_dir)


def expectation(name: str, metrics: dict, full_run: bool) -> str:
    """The README's range beside the result (only meaningful for the default run: all iterations, 2 threads)."""
    if not full_run:
        return '    (README ranges are for the default run: all iterations, --threads 2 or 1)'
    parts = []
    for key, label, low, high in EXPECTED[name]:
        value = metrics[key] * (100 if key.startswith('coco/') else 1)
        inside = low - 0.05 <= value <= high + 0.05
        parts.append(f'{label} {low:.1f}-{high:.1f}{"" if inside else f" (got {value:.1f}: OUTSIDE)"}')
    return '    README (range over 1-2 threads, AVX-512/AVX2 CPUs): ' + ', '.join(parts)


def summary(results: dict, full_run: bool = True) -> str:
    lines = ['', '=' * 72, 'mmrevcol demo results (val split of the synthetic shapes dataset)', '=' * 72]
    for name, r in results.items():
        m = r['metrics']
        lines.append(f"{r['title']}: {r['seconds'] / 60:.1f} min (training {r['train_seconds'] / 60:.1f} min), "
                     f"work dir {r['work_dir']}")
        if name == 'det':
            lines.append(f"    bbox AP {100 * m['coco/bbox_mAP']:.1f}  AP50 {100 * m['coco/bbox_mAP_50']:.1f}  |  "
                         f"segm AP {100 * m['coco/segm_mAP']:.1f}  AP50 {100 * m['coco/segm_mAP_50']:.1f}")
        else:
            lines.append(f"    mIoU {m['mIoU']:.1f}  aAcc {m['aAcc']:.1f}  mAcc {m['mAcc']:.1f}")
        lines.append(expectation(name, m, full_run))
    lines.append('=' * 72)
    return '\n'.join(lines)


def spread(args) -> dict:
    """``--spread``: every setting of :data:`SPREAD` in its own process; prints the range of each metric."""
    import json
    import subprocess
    out_dir = osp.join(args.work_dir, 'spread')
    os.makedirs(out_dir, exist_ok=True)
    runs = {}
    for threads, isa in SPREAD:
        name = f'threads{threads}_{isa or "native"}'
        env = dict(os.environ)
        env.pop('ONEDNN_MAX_CPU_ISA', None)
        if isa:
            env['ONEDNN_MAX_CPU_ISA'] = isa
        cmd = [sys.executable, osp.abspath(__file__), '--threads', str(threads), '--work-dir', osp.join(out_dir, name),
               '--json', osp.join(out_dir, f'{name}.json'), '--data-root', args.data_root]
        cmd += ['--only', args.only] if args.only else []
        cmd += ['--iters', str(args.iters)] if args.iters is not None else []
        print(f'\n##### {name}: {" ".join(cmd)}', flush=True)
        subprocess.run(cmd, env=env, check=True)
        with open(osp.join(out_dir, f'{name}.json')) as f:
            runs[name] = json.load(f)
    lines = ['', f'Spread over {len(runs)} settings ({", ".join(runs)}) on {describe_device()}:']
    ranges = {}
    for task in ([args.only] if args.only else ['det', 'seg']):
        ranges[task] = []
        for key, label, _, _ in EXPECTED[task]:
            values = [r[task][key] * (100 if key.startswith('coco/') else 1) for r in runs.values()]
            ranges[task].append((key, label, round(min(values), 1), round(max(values), 1)))
            lines.append(f'  {label}: ' + ', '.join(f'{v:.1f}' for v in values) +
                         f'  -> range {min(values):.1f}-{max(values):.1f}')
    lines.append(f'EXPECTED (tools/demo.py) and the README rows: {ranges}')
    print('\n'.join(lines), flush=True)
    return ranges


def main(argv=None):
    args = parse_args(argv)
    if args.spread:
        return spread(args)
    torch.set_num_threads(args.threads)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    print(f'torch {torch.__version__}, {describe_device()}, device {device}', flush=True)
    os.chdir(ROOT)
    generate(args.data_root)
    names = [args.only] if args.only else ['det', 'seg']
    results = {name: run_task(name, args) for name in names}
    full_run = args.iters is None and args.threads in (1, 2) and args.data_root == DEFAULT_ROOT
    print(summary(results, full_run), flush=True)
    if args.json:
        import json
        with open(args.json, 'w') as f:
            json.dump({name: {k: float(v) for k, v in r['metrics'].items()} for name, r in results.items()}, f)
    return results


if __name__ == '__main__':
    sys.exit(run_tool(main))
