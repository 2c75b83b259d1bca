"""Training-step peak memory and time of RevCol, reversible vs not, for a list of column counts.

Each measurement runs in a fresh subprocess so peaks don't leak between runs. Two peaks, each above what was
allocated just before the step:

- ``peak``: the first step from a clean state (model + input allocated): activations, temporaries AND the parameter
  gradients, which necessarily grow with the number of parameters, i.e. of columns.
- ``act``: a steady-state step whose gradient buffers already exist (``zero_grad(set_to_none=False)``), so it
  counts what a training step adds on top of the model and its gradients: activations and temporaries. This is
  the memory the reversible design is about.

``torch.cuda.max_memory_allocated`` on CUDA; on CPU the process's peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs``) with glibc's mmap threshold pinned (``MALLOC_MMAP_THRESHOLD_``) so that freed buffers
go back to the OS and RSS follows the allocator.

Example (the README table)::

    .venv/bin/python tools/analysis/benchmark_backbone.py --channels 32 64 96 128 --layers 2 2 4 2 \
        --columns 4 8 16 --batch 2 --size 224 --plot work_dirs/benchmark/memory.png

``--speed`` instead measures speed in one process, the compared models interleaved round by round (so that load
from elsewhere hits both alike), median over ``--rounds``:

- inference img/s, eager and ``torch.compile``d, RevCol (``--revcol-arch``, default T; eager both as is and after
  ``switch_to_deploy``) vs mmpretrain ConvNeXt (``--convnext-arch``, default T), both returning the four
  stride-4..32 maps, batch ``--infer-batch`` at ``--infer-size``; the first compiled call's time is printed too;
- training step time, reversible vs not, at ``--columns`` with ``--channels``/``--layers``/``--batch``/``--size``.

The issue-13 table (2 threads, quiet machine)::

    .venv/bin/python tools/analysis/benchmark_backbone.py --speed --threads 2 --infer-batch 8 --infer-size 224 \
        --channels 32 64 96 128 --layers 2 2 4 2 --columns 4 8 16 --batch 2 --size 224 --rounds 5
"""
import argparse
import json
import os
import sys

# this checkout's mmrevcol, also without `pip install -e .`
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))
from mmrevcol.utils.cli import run_tool  # noqa: E402
from mmrevcol.utils.profiling import (cuda_available, peak_memory, run_json_subprocess, time_fn,  # noqa: E402
                                      time_interleaved)

MODES = {
    'plain': dict(reversible=False, with_cp=False),
    'reversible': dict(reversible=True, with_cp=False),
    'checkpoint': dict(reversible=False, with_cp=True),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--channels', type=int, nargs=4, default=[32, 64, 96, 128])
    p.add_argument('--layers', type=int, nargs=4, default=[2, 2, 4, 2])
    p.add_argument('--columns', type=int, nargs='+', default=[4, 8, 16])
    p.add_argument('--modes', nargs='+', default=['plain', 'reversible'], choices=list(MODES))
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--kernel-size', type=int, default=3)
    p.add_argument('--drop-path', type=float, default=0.0)
    p.add_argument('--device', default='cuda' if cuda_available() else 'cpu')
    p.add_argument('--amp', choices=['none', 'fp16', 'bf16'], default='none')
    p.add_argument('--steps', type=int, default=3, help='timed steps after one warm-up step')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    p.add_argument('--plot', default=None, help='save a memory-vs-columns plot (PNG)')
    p.add_argument('--json', default=None, help='save the raw results')
    p.add_argument('--_one', default=None, help=argparse.SUPPRESS)  # internal: one measurement as JSON
    speed = p.add_argument_group('--speed: inference vs ConvNeXt, eager and compiled; training rev vs plain')
    speed.add_argument('--speed', action='store_true', help='measure speed instead of memory')
    speed.add_argument('--revcol-arch', default='tiny', help='RevCol arch name or JSON dict')
    speed.add_argument('--convnext-arch', default='tiny', help='mmpretrain ConvNeXt arch name or JSON dict')
    speed.add_argument('--infer-batch', type=int, default=8)
    speed.add_argument('--infer-size', type=int, default=224)
    speed.add_argument('--rounds', type=int, default=5, help='interleaved timed rounds (median)')
    speed.add_argument('--no-compile', action='store_true', help='skip the torch.compile rows')
    speed.add_argument('--no-train', action='store_true', help='skip the training rows')
    return p.parse_args(argv)


def measure_one(args, mode: str, num_columns: int) -> dict:
    import torch

    from mmrevcol.models import RevCol
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    arch = dict(channels=args.channels, layers=args.layers, num_columns=num_columns)
    model = RevCol(arch=arch, kernel_size=args.kernel_size, drop_path_rate=args.drop_path, **MODES[mode])
    model.init_weights()
    model.to(device).train()
    img = torch.randn(args.batch, 3, args.size, args.size, device=device)
    amp_dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(args.amp)

    def step(set_to_none=True):
        model.zero_grad(set_to_none=set_to_none)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outs = model(img)
            loss = sum(o.float().mean() for o in outs)
        loss.backward()

    peak = peak_memory(lambda: step(set_to_none=True), device)  # first step: gradients are allocated inside it
    act = peak_memory(lambda: step(set_to_none=False), device)  # steady state: gradient buffers exist already
    step_s = time_fn(step, device, iters=1, warmup=0, repeats=args.steps, reduce='min')
    return dict(mode=mode, columns=num_columns, peak_mib=peak / 2**20, act_mib=act / 2**20, step_s=step_s,
                params_m=sum(p.numel() for p in model.parameters()) / 1e6)


def run_subprocess(args, mode: str, num_columns: int) -> dict:
    """Memory from one process with glibc's mmap threshold pinned; time from another without (the pinned
    allocator maps and unmaps every large buffer, which would distort the timings)."""
    cmd = [sys.executable, __file__, '--_one', f'{mode}:{num_columns}'] + _forward_args(args)
    result = run_json_subprocess(cmd, pinned_malloc=True)
    if args.device == 'cpu':
        result['step_s'] = run_json_subprocess(cmd, pinned_malloc=False)['step_s']
    return result


def _forward_args(args):
    fw = ['--channels', *map(str, args.channels), '--layers', *map(str, args.layers), '--batch', str(args.batch),
          '--size', str(args.size), '--kernel-size', str(args.kernel_size), '--drop-path', str(args.drop_path),
          '--device', args.device, '--amp', args.amp, '--steps', str(args.steps)]
    if args.threads:
        fw += ['--threads', str(args.threads)]
    return fw


def print_table(results, args):
    by = {(r['mode'], r['columns']): r for r in results}
    print(f"\nRevCol channels={args.channels} layers={args.layers} batch={args.batch} {args.size}x{args.size} "
          f"device={args.device} amp={args.amp}")
    cols = ['columns', 'params (M)']
    for m in args.modes:
        cols += [f'{m} peak (MiB)', f'{m} act (MiB)', f'{m} step (s)']
    both = 'plain' in args.modes and 'reversible' in args.modes
    if both:
        cols += ['rev/plain peak', 'rev/plain act', 'rev/plain time']
    print('| ' + ' | '.join(cols) + ' |')
    print('|' + '---|' * len(cols))
    for n in args.columns:
        row = [str(n), f"{by[(args.modes[0], n)]['params_m']:.2f}"]
        for m in args.modes:
            r = by[(m, n)]
            row += [f"{r['peak_mib']:.1f}", f"{r['act_mib']:.1f}", f"{r['step_s']:.3f}"]
        if both:
            r, p = by[('reversible', n)], by[('plain', n)]
            row += [f"{r['peak_mib'] / p['peak_mib']:.2f}x", f"{r['act_mib'] / p['act_mib']:.2f}x",
                    f"{r['step_s'] / p['step_s']:.2f}x"]
        print('| ' + ' | '.join(row) + ' |')
    for m in args.modes:
        first, last = by[(m, args.columns[0])], by[(m, args.columns[-1])]
        print(f'{m}: at {args.columns[-1]} vs {args.columns[0]} columns: peak {last["peak_mib"] / first["peak_mib"]:.2f}x, '
              f'act {last["act_mib"] / first["act_mib"]:.2f}x')


def plot(results, args, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m in args.modes:
        rs = [r for r in results if r['mode'] == m]
        ax.plot([r['columns'] for r in rs], [r['peak_mib'] for r in rs], marker='o', label=f'{m} peak')
        ax.plot([r['columns'] for r in rs], [r['act_mib'] for r in rs], marker='x', ls='--', label=f'{m} act')
    ax.set_xlabel('columns')
    ax.set_ylabel(f'training-step peak memory (MiB, {args.device})')
    ax.set_title(f'RevCol {args.channels}, batch {args.batch}, {args.size}px')
    ax.grid(alpha=.3)
    ax.legend()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f'plot saved to {path}')


# ---------------------------------------------------------------------------------------------------------------
# --speed


def _arch(value: str):
    return json.loads(value) if value.lstrip().startswith('{') else value


def speed(args) -> dict:
    import copy

    import torch
    from mmpretrain.models import ConvNeXt

    from mmrevcol.models import RevCol
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = dict(inference={}, compile_s={}, training=[])
    torch.manual_seed(0)
    revcol = RevCol(arch=_arch(args.revcol_arch), out_indices=(0, 1, 2, 3)).to(device).eval()
    deploy = copy.deepcopy(revcol)
    deploy.switch_to_deploy()
    convnext = ConvNeXt(arch=_arch(args.convnext_arch), out_indices=(0, 1, 2, 3), gap_before_final_norm=False)
    convnext.to(device)
    convnext.eval()  # mmpretrain's ConvNeXt.train() returns None: no chaining
    img = torch.randn(args.infer_batch, 3, args.infer_size, args.infer_size, device=device)
    models = {'RevCol': revcol, 'RevCol deploy': deploy, 'ConvNeXt': convnext}

    def call(model):
        def run():
            with torch.no_grad():
                model(img)
        return run

    fns = {f'{k} eager': call(m) for k, m in models.items()}
    if not args.no_compile:
        for k in ('RevCol deploy', 'ConvNeXt'):
            compiled = torch.compile(models[k])
            results['compile_s'][k] = time_fn(call(compiled), device, iters=1, warmup=0, repeats=1)
            print(f'  compiled {k}: first call {results["compile_s"][k]:.1f} s', flush=True)
            fns[f'{k} compiled'] = call(compiled)
    for k, t in time_interleaved(fns, device, args.rounds).items():
        results['inference'][k] = args.infer_batch / t
        print(f'  {k}: {args.infer_batch / t:.2f} img/s', flush=True)

    if not args.no_train:
        x = torch.randn(args.batch, 3, args.size, args.size, device=device)
        for n in args.columns:
            arch = dict(channels=args.channels, layers=args.layers, num_columns=n)
            pair = {}
            for mode in ('plain', 'reversible'):
                torch.manual_seed(0)
                model = RevCol(arch=arch, kernel_size=args.kernel_size, drop_path_rate=args.drop_path,
                               **MODES[mode]).to(device).train()

                def step(model=model):
                    model.zero_grad(set_to_none=True)
                    sum(o.float().mean() for o in model(x)).backward()
                pair[mode] = step
            t = time_interleaved(pair, device, args.rounds)
            row = dict(columns=n, plain_s=t['plain'], reversible_s=t['reversible'])
            results['training'].append(row)
            print(f"  training columns={n}: plain {t['plain']:.3f} s  reversible {t['reversible']:.3f} s  "
                  f"({t['reversible'] / t['plain']:.2f}x)", flush=True)
    return results


def print_speed(results, args):
    inf = results['inference']
    print(f'\nInference, batch {args.infer_batch}, {args.infer_size}x{args.infer_size}, device={args.device}, '
          f'threads={args.threads or "default"}: RevCol {args.revcol_arch} vs ConvNeXt {args.convnext_arch} (img/s)')
    print('| mode | RevCol | RevCol deploy | ConvNeXt | RevCol deploy / ConvNeXt | first compiled call (s) |')
    print('|---|---|---|---|---|---|')
    for mode in ('eager', 'compiled'):
        if f'ConvNeXt {mode}' not in inf:
            continue
        rev = inf.get(f'RevCol {mode}')
        comp = results['compile_s']
        first = (f"RevCol {comp['RevCol deploy']:.0f} / ConvNeXt {comp['ConvNeXt']:.0f}" if mode == 'compiled'
                 else '-')
        print(f"| {mode} | {f'{rev:.2f}' if rev else '-'} | {inf[f'RevCol deploy {mode}']:.2f} | "
              f"{inf[f'ConvNeXt {mode}']:.2f} | {inf[f'RevCol deploy {mode}'] / inf[f'ConvNeXt {mode}']:.2f}x | "
              f'{first} |')
    if results['training']:
        print(f'\nTraining step, RevCol channels={args.channels} layers={args.layers}, batch {args.batch}, '
              f'{args.size}x{args.size} (s)')
        print('| columns | plain | reversible | rev / plain |')
        print('|---|---|---|---|')
        for r in results['training']:
            print(f"| {r['columns']} | {r['plain_s']:.3f} | {r['reversible_s']:.3f} | "
                  f"{r['reversible_s'] / r['plain_s']:.2f}x |")


def main(argv=None):
    args = parse_args(argv)
    if args.speed:
        results = speed(args)
        print_speed(results, args)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(dict(args=vars(args), results=results), f, indent=1)
        return results
    if args._one:
        mode, n = args._one.split(':')
        print(json.dumps(measure_one(args, mode, int(n))))
        return
    results = []
    for n in args.columns:
        for m in args.modes:
            r = run_subprocess(args, m, n)
            print(f"  {m:>10} columns={n:<3} peak={r['peak_mib']:8.1f} MiB  act={r['act_mib']:8.1f} MiB  "
                  f"step={r['step_s']:.3f} s", flush=True)
            results.append(r)
    print_table(results, args)
    if args.plot:
        plot(results, args, args.plot)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), results=results), f, indent=1)


if __name__ == '__main__':
    sys.exit(run_tool(main))
