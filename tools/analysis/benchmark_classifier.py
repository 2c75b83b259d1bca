"""Peak training memory of RevColClassifier with intermediate supervision (4 heads, 3 decoders) vs column count.

The heads sit every ``num_columns // 4`` columns, so their number does not grow; with ``reversible=True`` the
backbone's activation memory does not either. Printed: per column count the training-step peak (``peak``: first
step, gradients allocated inside it) and ``act`` (steady state: what a step adds above the model and its gradient
buffers), measured in fresh subprocesses as ``benchmark_backbone.py`` does (``torch.cuda.max_memory_allocated`` on
CUDA, peak RSS on CPU), and the ratio of the largest to the smallest column count (target: act <= 1.10x).

Example (quiet machine / GPU)::

    .venv/bin/python tools/analysis/benchmark_classifier.py --columns 4 16 --batch 8 --size 224
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))  # this checkout's mmrevcol
from mmrevcol.utils.cli import run_tool  # noqa: E402
from mmrevcol.utils.profiling import cuda_available, peak_memory, run_json_subprocess, time_fn  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--channels', type=int, nargs=4, default=[32, 64, 96, 128])
    p.add_argument('--layers', type=int, nargs=4, default=[2, 2, 4, 2])
    p.add_argument('--columns', type=int, nargs='+', default=[4, 16])
    p.add_argument('--modes', nargs='+', default=['reversible', 'plain'], choices=['reversible', 'plain'])
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--num-classes', type=int, default=1000)
    p.add_argument('--device', default='cuda' if cuda_available() else 'cpu')
    p.add_argument('--amp', choices=['none', 'fp16', 'bf16'], default='none')
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--_one', default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def measure_one(args, mode: str, num_columns: int) -> dict:
    import torch
    from mmpretrain.structures import DataSample

    import mmrevcol  # noqa: F401
    from mmrevcol.models import RevColClassifier
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = RevColClassifier(
        backbone=dict(type='RevCol', arch=dict(channels=args.channels, layers=args.layers, num_columns=num_columns),
                      reversible=mode == 'reversible'),
        head=dict(type='RevColClsHead', num_classes=args.num_classes, in_channels=args.channels[-1]),
        data_preprocessor=dict(type='ClsDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], num_classes=args.num_classes))
    model.init_weights()
    model.to(device).train()
    img = torch.randn(args.batch, 3, args.size, args.size, device=device)
    samples = [DataSample().set_gt_label(i % args.num_classes) for i in range(args.batch)]
    amp_dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(args.amp)

    def step(set_to_none=True):
        model.zero_grad(set_to_none=set_to_none)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss, _ = model.parse_losses(model(img, samples, mode='loss'))
        loss.backward()

    peak = peak_memory(lambda: step(True), device)  # first step: gradients are allocated inside it
    act = peak_memory(lambda: step(False), device)  # steady state
    step_s = time_fn(step, device, iters=1, warmup=0, repeats=1)
    return dict(mode=mode, columns=num_columns, peak_mib=peak / 2**20, act_mib=act / 2**20,
                step_s=step_s, heads=len(model.taps),
                params_m=sum(p.numel() for p in model.parameters()) / 1e6)


def main(argv=None):
    args = parse_args(argv)
    if args._one:
        mode, n = args._one.split(':')
        print(json.dumps(measure_one(args, mode, int(n))))
        return
    fw = ['--channels', *map(str, args.channels), '--layers', *map(str, args.layers), '--batch', str(args.batch),
          '--size', str(args.size), '--num-classes', str(args.num_classes), '--device', args.device, '--amp', args.amp]
    if args.threads:
        fw += ['--threads', str(args.threads)]
    by = {}
    for m in args.modes:
        for n in args.columns:
            r = run_json_subprocess([sys.executable, __file__, '--_one', f'{m}:{n}'] + fw, pinned_malloc=True)
            by[m, n] = r
            print(f"{m:>10} columns={n:<3} heads={r['heads']} params={r['params_m']:.2f}M "
                  f"peak={r['peak_mib']:.1f} MiB act={r['act_mib']:.1f} MiB step={r['step_s']:.3f} s", flush=True)
    lo, hi = args.columns[0], args.columns[-1]
    for m in args.modes:
        a, b = by[m, lo], by[m, hi]
        print(f'{m}: {hi} vs {lo} columns with heads: peak {b["peak_mib"] / a["peak_mib"]:.2f}x, '
              f'act {b["act_mib"] / a["act_mib"]:.2f}x')


if __name__ == '__main__':
    sys.exit(run_tool(main))
