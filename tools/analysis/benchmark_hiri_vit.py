"""Inference throughput (img/s) of HIRI-ViT-S at 448^2 against RevCol-T and ConvNeXt-T at 224^2: the paper's point
that a five-stage HIRI-ViT at 448^2 costs about what a four-stage model does at 224^2.

Backbones only (classification-style, last stage), ``eval()`` + ``torch.inference_mode``, random weights (speed does
not depend on them). Each model: ``--warmup`` untimed batches, then ``--repeats`` timed rounds of ``--iters``
batches; the best round is reported (the least disturbed by other processes). Run it on a quiet machine.

Examples::

    # the comparison (CPU, 1 image at a time and batch 16)
    .venv/bin/python tools/analysis/benchmark_hiri_vit.py --batch 1 16 --flops
    # GPU
    .venv/bin/python tools/analysis/benchmark_hiri_vit.py --device cuda --batch 64 --iters 50
    # a quick check of the tool itself
    .venv/bin/python tools/analysis/benchmark_hiri_vit.py --size-scale 0.25 --iters 1 --warmup 0 --repeats 1
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402

from mmpretrain.models import ConvNeXt  # noqa: E402

from mmrevcol.models import HIRIViT, RevCol  # noqa: E402
from mmrevcol.utils.cli import run_tool  # noqa: E402
from mmrevcol.utils.complexity import flop_analyzer  # noqa: E402
from mmrevcol.utils.profiling import time_fn  # noqa: E402

# name -> (builder, input size)
MODELS = {
    'hiri_vit_s': (lambda: HIRIViT('s'), 448),
    'revcol_t': (lambda: RevCol('tiny', out_indices=(3, )), 224),
    'convnext_t': (lambda: ConvNeXt('tiny'), 224),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    p.add_argument('--batch', type=int, nargs='+', default=[1, 16], help='batch sizes to time')
    p.add_argument('--iters', type=int, default=10, help='batches per timed round')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--repeats', type=int, default=3, help='timed rounds; the best is reported')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--size-scale', type=float, default=1.0, help='scale every input size (quick checks only)')
    p.add_argument('--flops', action='store_true', help='also count GMACs with mmengine (slow on CPU)')
    return p.parse_args(argv)


def throughput(model, size: int, batch: int, iters: int, warmup: int, repeats: int, device) -> float:
    """Images/s of the best of ``repeats`` rounds of ``iters`` batches, after ``warmup`` untimed batches."""
    x = torch.randn(batch, 3, size, size, device=device)

    def run():
        with torch.inference_mode():
            model(x)

    return batch / time_fn(run, device, iters=iters, warmup=warmup, repeats=repeats, reduce='min')


def gmacs(model, size: int) -> float:
    inputs = (torch.zeros(1, 3, size, size, device=next(model.parameters()).device), )
    return flop_analyzer(model, inputs).total() / 1e9


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for name in args.models:
        build, size = MODELS[name]
        size = max(32, int(round(size * args.size_scale)))
        torch.manual_seed(0)
        model = build().to(device)
        model.eval()  # (mmpretrain's ConvNeXt.train does not return self)
        row = dict(model=name, size=size, params=sum(p.numel() for p in model.parameters()) / 1e6)
        if args.flops:
            row['gmacs'] = gmacs(model, size)
        for b in args.batch:
            row[f'bs{b}'] = throughput(model, size, b, args.iters, args.warmup, args.repeats, device)
        rows.append(row)
        print(row, flush=True)
    threads = torch.get_num_threads() if device.type == 'cpu' else '-'
    print(f'\ndevice={device} threads={threads} iters={args.iters} repeats={args.repeats}')
    cols = ['model', 'input', 'params (M)'] + (['GMACs'] if args.flops else []) + [f'img/s (batch {b})'
                                                                                   for b in args.batch]
    print('| ' + ' | '.join(cols) + ' |')
    print('|' + '---|' * len(cols))
    for r in rows:
        cells = [r['model'], f"{r['size']}^2", f"{r['params']:.1f}"] + (
            [f"{r['gmacs']:.2f}"] if args.flops else []) + [f"{r[f'bs{b}']:.1f}" for b in args.batch]
        print('| ' + ' | '.join(cells) + ' |')
    return rows


if __name__ == '__main__':
    sys.exit(run_tool(main))
