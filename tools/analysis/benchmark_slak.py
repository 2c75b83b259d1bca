"""SLaK throughput (img/s) per large-kernel implementation vs mmpretrain's ConvNeXt, in one run.

For each row: training (forward + backward, train mode) and inference (eval mode, no grad) images per second,
median over ``--iters`` timed iterations after ``--warmup`` untimed ones. Rows: SLaK with ``impl='conv'``
(depthwise ``F.conv2d``), ``'fft'`` and ``'auto'`` (what :func:`choose_impl` picks is printed), the
re-parameterised SLaK (one merged K×K kernel per block; inference only) with ``conv`` and ``fft``, and ConvNeXt.
The fastest inference row among SLaK's implementations is marked, to check that ``auto`` is the fastest here.

Example (the README table; on a quiet machine)::

    .venv/bin/python tools/analysis/benchmark_slak.py --arch tiny --size 224 --batch 8 --iters 5 --threads 2

Smoke run (seconds)::

    .venv/bin/python tools/analysis/benchmark_slak.py --arch-dims 16 32 48 64 --arch-depths 1 1 1 1 \\
        --kernel-size 13 11 9 7 3 --size 64 --batch 2 --iters 1 --warmup 0
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
import mmrevcol  # noqa: E402,F401  isort:skip

import torch  # noqa: E402

from mmrevcol.models.backbones.slak import SLaK  # noqa: E402
from mmrevcol.models.layers.large_kernel import choose_impl  # noqa: E402
from mmrevcol.utils.cli import run_tool  # noqa: E402
from mmrevcol.utils.profiling import time_fn  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='tiny', help="SLaK arch: 'tiny', 'small', 'base'")
    p.add_argument('--arch-dims', type=int, nargs=4, default=None, help='a reduced arch instead (with --arch-depths)')
    p.add_argument('--arch-depths', type=int, nargs=4, default=None)
    p.add_argument('--kernel-size', type=int, nargs=5, default=[51, 49, 47, 13, 5])
    p.add_argument('--convnext-arch', default=None,
                   help="mmpretrain ConvNeXt arch to compare with (default: 'tiny', or dims/depths of the reduced "
                        'arch)')
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--modes', nargs='+', default=['train', 'infer'], choices=['train', 'infer'])
    return p.parse_args(argv)


def throughput(model, x, train: bool, iters: int, warmup: int) -> float:
    """Median images/s of ``iters`` timed iterations (after ``warmup`` untimed ones)."""
    model.train(train)

    def step():
        if train:
            model.zero_grad(set_to_none=True)
            sum(o.float().mean() for o in model(x)).backward()
        else:
            with torch.no_grad():
                model(x)

    return x.shape[0] / time_fn(step, x.device, iters=1, warmup=warmup, repeats=iters, reduce='median')


def build_rows(args):
    arch = (dict(dims=args.arch_dims, depths=args.arch_depths) if args.arch_dims else args.arch)
    common = dict(arch=arch, kernel_size=args.kernel_size, out_indices=(3, ), out_norm=False)
    rows = [(f'SLaK {impl}', lambda impl=impl: SLaK(impl=impl, **common), True) for impl in ('conv', 'fft', 'auto')]

    def deployed(impl):
        model = SLaK(impl=impl, **common).eval()
        model.switch_to_deploy()
        return model

    rows += [(f'SLaK deployed {impl}', lambda impl=impl: deployed(impl), False) for impl in ('conv', 'fft')]

    def convnext():
        from mmpretrain.models.backbones import ConvNeXt
        if args.convnext_arch:
            return ConvNeXt(arch=args.convnext_arch, out_indices=(3, ))
        if args.arch_dims:
            return ConvNeXt(arch=dict(channels=args.arch_dims, depths=args.arch_depths), out_indices=(3, ))
        return ConvNeXt(arch=args.arch, out_indices=(3, ))

    rows.append(('ConvNeXt (mmpretrain)', convnext, True))
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    results = []
    for name, build, trainable in build_rows(args):
        model = build().to(device)
        row = dict(name=name)
        for mode in args.modes:
            if mode == 'train' and not trainable:
                row[mode] = None
                continue
            row[mode] = throughput(model, x, mode == 'train', args.iters, args.warmup)
        results.append(row)
        del model
    s = args.size // 4
    kernels = [(k, args.kernel_size[4]) for k in args.kernel_size[:4]]
    auto = choose_impl(device, kernels + [(args.kernel_size[4], k) for k in args.kernel_size[:4]])
    auto_deployed = choose_impl(device, [(k, k) for k in args.kernel_size[:4]])
    print(f'device {device}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size}x{args.size} '
          f'(stage-1 maps {s}x{s}), kernels {args.kernel_size}; auto picks {auto!r} (decomposed), '
          f'{auto_deployed!r} (deployed K×K)')
    head = f'{"model":<24} ' + ' '.join(f'{m + " img/s":>12}' for m in args.modes)
    print(head + '\n' + '-' * len(head))
    best = max((r for r in results if r['name'].startswith('SLaK') and 'deployed' not in r['name']),
               key=lambda r: r.get('infer') or r.get('train') or 0)
    for r in results:
        cells = ' '.join(f'{r[m]:12.2f}' if r[m] is not None else f'{"-":>12}' for m in args.modes)
        print(f'{r["name"]:<24} {cells}' + ('   <- fastest decomposed' if r is best else ''))
    return results


if __name__ == '__main__':
    sys.exit(run_tool(main))
