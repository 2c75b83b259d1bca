"""Step time of a real training with and without FeatureStatsHook: the overhead at its default interval.

Times the hook at every step (interval 1) against no hook, runs alternating, and derives the amortised overhead
at the intervals given (the hook attaches nothing between sampled iterations). Run it on a quiet machine:

    .venv/bin/python tools/analysis/feature_stats_overhead.py configs/acceptance/upernet_revcol_camvid.py
    # the reversible path
    .venv/bin/python tools/analysis/feature_stats_overhead.py configs/acceptance/upernet_revcol_camvid.py \
        --cfg-options model.backbone.reversible=True

Prints the medians (ms/step) and the overhead in %; --out writes them as JSON.
"""
import argparse
import json
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mmrevcol.utils.cli import LiteralDictAction, run_tool  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='training config')
    p.add_argument('--iters', type=int, default=30, help='timed iterations per run')
    p.add_argument('--warmup', type=int, default=5, help='untimed iterations at the start of each run')
    p.add_argument('--rounds', type=int, default=2, help='alternations of (without, with) the hook')
    p.add_argument('--intervals', type=int, nargs='+', default=[10, 50, 100],
                   help='intervals to report the amortised overhead for')
    p.add_argument('--no-grads', action='store_true', help='the hook without gradient statistics')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--out', default=None, help='JSON file for the numbers')
    p.add_argument('--cfg-options', nargs='+', action=LiteralDictAction, help='key=value overrides of the config')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    import mmrevcol  # noqa: F401  (registers FeatureStatsHook)
    from mmrevcol.analysis.overhead import measure_hook_overhead
    if args.threads:
        torch.set_num_threads(args.threads)
    hook = dict(type='FeatureStatsHook', interval=1, grads=not args.no_grads)
    result = measure_hook_overhead(args.config, hook, args.cfg_options, iters=args.iters, warmup=args.warmup,
                                   rounds=args.rounds, intervals=args.intervals, log=print)
    print(f"device: {result['device']}")
    print(f"step without the hook: {result['plain_s'] * 1e3:.1f} ms (median of {len(result['times']['plain'])})")
    print(f"step with the hook at every step: {result['hooked_s'] * 1e3:.1f} ms "
          f"(+{result['overhead_every_step'] * 100:.1f} %)")
    for interval, overhead in result['amortised'].items():
        print(f'amortised overhead at interval {interval}: {overhead * 100:.2f} %')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
