"""Backbones side by side: parameters, FLOPs at an input size, training-step memory and time, inference throughput,
all measured in one process on the current device (CUDA when present, else CPU), with the published ImageNet top-1
and downstream numbers of ``tools/analysis/zoo_published.yaml`` beside them.

Each config is a detection / segmentation config of the project; its ``model.backbone`` is built (no pretrained
weights, no download) and measured alone, so the numbers compare backbones, not heads. Saves ``compare.md``,
``compare.csv`` and ``compare.png`` under ``--out``.

    # every entry of zoo_published.yaml whose config exists (RevCol-T, ConvNeXt-T, the classics, ...)
    .venv/bin/python tools/analysis/compare_backbones.py --size 224 --batch 8 --steps 5
    # any list of configs (names from the yaml when listed there, else the file name)
    .venv/bin/python tools/analysis/compare_backbones.py configs/upernet_revcol_t_ade20k.py \
        configs/convnext/upernet_convnext_t_ade20k.py --size 224

Where a published number follows another convention than the measurement (SLaK: counted 40 % sparse; HIRI-ViT: at
448²; published parameters include the ImageNet classifier), the yaml says so (``conventions``) and the table and
plot mark it: the note in the table, a hatched bar with the note in the plot. For a sparse model (``sparsity`` in the
yaml) the counts at that sparsity are measured too and drawn as a hatched bar beside the dense one.

Conventions: FLOPs are multiply-accumulates counted by mmengine.analysis (as tools/analysis/get_flops.py and the
papers: "GFLOPs" there are GMACs), on one ``3 x size x size`` image, backbone only. The training step is forward,
``sum(mean(output))`` backward and an AdamW step on a batch of ``--batch`` random images; its memory is the peak
above what was allocated before the step (activations and temporaries; weights, gradients and AdamW state are
already allocated and listed apart as ``static``). CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's
peak RSS (``VmHWM`` reset through ``/proc/self/clear_refs``) with glibc's mmap threshold pinned so freed buffers go
back to the OS (the tool re-executes itself with ``MALLOC_MMAP_THRESHOLD_`` set). Times are the best of
``--steps`` after one warm-up step; inference is ``model.eval()`` under ``torch.no_grad()``.
"""
import argparse
import copy
import csv
import gc
import os
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, REPO)
from mmrevcol.utils.cli import MissingInputError, run_tool  # noqa: E402
from mmrevcol.utils.profiling import (cuda_available, describe_device, peak_memory,  # noqa: E402
                                      reexec_with_pinned_malloc, time_fn)

DEFAULT_REGISTRY = osp.join(osp.dirname(osp.abspath(__file__)), 'zoo_published.yaml')
PUBLISHED = [('params_m', 'params (M) pub.'), ('gflops', 'GFLOPs pub.'), ('top1', 'top-1 pub.'),
             ('cascade_box', 'Cascade AP box pub.'), ('cascade_mask', 'Cascade AP mask pub.'),
             ('upernet_miou', 'UPerNet mIoU pub.')]
MEASURED = [('params_m', 'params (M)'), ('gflops', 'GFLOPs'), ('static_mib', 'static (MiB)'),
            ('train_mib', 'train act (MiB)'), ('train_s', 'train step (s)'), ('infer_ips', 'infer (img/s)')]
# measured again under the published convention when the yaml gives a sparsity (SLaK)
SPARSE = [('params_sparse_m', 'params (M) sparse'), ('gflops_sparse', 'GFLOPs sparse')]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='*', help='configs to compare (default: every entry of --registry that exists)')
    p.add_argument('--registry', default=DEFAULT_REGISTRY, help='yaml of names, configs and published numbers')
    p.add_argument('--size', type=int, default=224, help='square input size (FLOPs, training, inference)')
    p.add_argument('--batch', type=int, default=8, help='images per training / inference step')
    p.add_argument('--steps', type=int, default=3, help='timed steps after one warm-up step')
    p.add_argument('--device', default=None, help='cuda / cpu (default: cuda when available)')
    p.add_argument('--amp', choices=['none', 'fp16', 'bf16'], default='none', help='autocast for train / infer')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--skip-flops', action='store_true', help='do not count FLOPs (slow for big backbones on CPU)')
    p.add_argument('--cfg-options', nargs='+', default=None,
                   help='key=value overrides applied to every config (e.g. model.backbone.arch=...)')
    p.add_argument('--out', default='work_dirs/compare_backbones', help='folder for compare.{md,csv,png}')
    return p.parse_args(argv)


def _pin_malloc_and_reexec(argv):
    """Peak RSS tracks the allocator only when freed buffers are unmapped: pin glibc's mmap threshold (must be set
    before the process starts, hence the re-exec). Only from the command line, on CPU."""
    args = parse_args(argv)
    if args.device in (None, 'cpu') and not cuda_available():
        reexec_with_pinned_malloc()


def load_registry(path):
    import yaml
    with open(path) as f:
        entries = yaml.safe_load(f) or []
    return {osp.normpath(e['config']): e for e in entries}


def select(args, registry):
    if args.configs:
        chosen = [osp.normpath(osp.relpath(osp.abspath(c), REPO)) for c in args.configs]
        missing = [c for c in chosen if not osp.exists(osp.join(REPO, c))]
        if missing:
            raise MissingInputError(f'configs not found: {missing}')
        return chosen
    return [c for c in registry if osp.exists(osp.join(REPO, c))]


def backbone_config(cfg):
    b = copy.deepcopy(cfg.model.backbone)
    b.init_cfg = None  # weights don't change what is measured; nothing is downloaded
    if 'pretrained' in b:
        b.pretrained = False
    return b


def build_backbone(cfg, device):
    import torch
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = revert_sync_batchnorm(MODELS.build(backbone_config(cfg)))
    model.init_weights()
    torch.manual_seed(0)
    return model.to(device)


def count_flops(cfg, size, sparsity=0.):
    """Backbone MACs at ``size`` with mmengine.analysis (the counter of tools/analysis/get_flops.py); with
    ``sparsity`` also ``(MACs, params)`` with conv/linear weights at density ``1 - sparsity``."""
    import torch

    from mmrevcol.utils.complexity import model_complexity, sparse_complexity
    model = build_backbone(cfg, 'cpu')
    model.eval()  # some mmpretrain backbones' train() returns None: no chaining
    inputs = (torch.zeros(1, 3, size, size), )
    with torch.no_grad():
        flops = model_complexity(model, inputs)['flops']
    if not sparsity:
        return flops
    sparse = sparse_complexity(model, inputs, sparsity, flops=flops)
    return flops, sparse['flops'], sparse['params']


def measure(cfg, args, device):
    import torch
    amp_dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(args.amp)
    model = build_backbone(cfg, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    img = torch.randn(args.batch, 3, args.size, args.size, device=device)

    def train_step():
        optimizer.zero_grad(set_to_none=False)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = sum(o.float().mean() for o in model(img))
        loss.backward()
        optimizer.step()

    def infer():
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            model(img)

    model.train()
    train_step()  # warm-up: gradients and AdamW state get allocated here
    gc.collect()
    act = peak_memory(train_step, device)
    train_s = time_fn(train_step, device, iters=1, warmup=0, repeats=args.steps, reduce='min')
    model.eval()
    infer_ips = args.batch / time_fn(infer, device, iters=args.steps, warmup=1, repeats=1)
    n_params = sum(p.numel() for p in model.parameters())
    static = sum(p.numel() * p.element_size() for p in params) * 4  # weights, grads, exp_avg, exp_avg_sq
    del model, optimizer, img
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return dict(params_m=n_params / 1e6, static_mib=static / 2**20, train_mib=act / 2**20, train_s=train_s,
                infer_ips=infer_ips)


def _fmt(v, key):
    if v is None or v == '':
        return ''
    if key in ('infer_ips', ):
        return f'{v:.1f}'
    if key in ('train_s', ):
        return f'{v:.3f}'
    if key in ('train_mib', 'static_mib'):
        return f'{v:.0f}'
    return f'{v:.4g}' if isinstance(v, float) else str(v)


def conventions(entry: dict) -> dict:
    """``{metric key: note}``: where the published number follows another convention than the measurement."""
    return dict(entry.get('conventions') or {})


def notes_of(row) -> str:
    return '; '.join(f'{k}: {v}' for k, v in conventions(row['published']).items())


def write_outputs(rows, args, device, out):
    os.makedirs(out, exist_ok=True)
    sparse = [(k, h) for k, h in SPARSE if any(k in r['measured'] for r in rows)]
    measured = MEASURED + sparse
    header = ['backbone', 'config'] + [h for _, h in measured] + [h for _, h in PUBLISHED] + ['notes']
    lines = [f'Backbones measured on {describe_device(device)}, input {args.size}x{args.size}, batch '
             f'{args.batch}, amp {args.amp}, best of {args.steps} steps; FLOPs = MACs (mmengine.analysis), '
             'backbone only (dense unless a "sparse" column says otherwise); "pub." = published '
             '(tools/analysis/zoo_published.yaml), counted as the notes say.', '',
             '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for r in rows:
        cells = [r['name'], f"`{r['config']}`"] + [_fmt(r['measured'].get(k), k) for k, _ in measured] + \
            [_fmt(r['published'].get(k), k) for k, _ in PUBLISHED] + [notes_of(r)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    md = '\n'.join(lines) + '\n'
    print(md)
    with open(osp.join(out, 'compare.md'), 'w') as f:
        f.write(md)
    with open(osp.join(out, 'compare.csv'), 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['backbone', 'config', 'device', 'size', 'batch', 'amp'] + [k for k, _ in measured] +
                   [f'{k}_published' for k, _ in PUBLISHED] + ['notes'])
        for r in rows:
            w.writerow([r['name'], r['config'], str(device), args.size, args.batch, args.amp] +
                       [r['measured'].get(k, '') for k, _ in measured] +
                       [r['published'].get(k, '') for k, _ in PUBLISHED] + [notes_of(r)])
    plot(rows, args, device, osp.join(out, 'compare.png'))
    print(f'saved {out}/compare.md, compare.csv, compare.png')


def plot(rows, args, device, path):
    """Four panels (parameters, GMACs, activations, throughput). Published bars beside the measured ones; a bar
    under another convention than its neighbour is hatched and annotated (the yaml's ``conventions``), and a sparse
    model's counts at its published sparsity are a hatched measured bar."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    names = [r['name'] + (f" ({r['published']['top1']}%)" if r['published'].get('top1') else '') for r in rows]
    # (measured key, title, published key, measured key under the published convention)
    panels = [('params_m', 'parameters (M)', 'params_m', 'params_sparse_m'),
              ('gflops', f'GMACs at {args.size}²', 'gflops' if args.size == 224 else None, 'gflops_sparse'),
              ('train_mib', f'train-step activations (MiB, batch {args.batch})', None, None),
              ('infer_ips', 'inference (img/s)', None, None)]
    fig, axes = plt.subplots(1, 4, figsize=(4.6 * 4, 0.5 * len(rows) + 2.4))
    ys = list(range(len(rows)))
    marked = False
    for ax, (key, title, pub, alt) in zip(axes, panels):
        vals = [r['measured'].get(key) or 0 for r in rows]
        ax.barh([y + 0.2 for y in ys], vals, height=0.4, color='C0', label='measured (dense)')
        for y, r in zip(ys, rows):
            if alt and r['measured'].get(alt):  # the sparse count over the dense one, hatched
                ax.barh(y + 0.2, r['measured'][alt], height=0.4, color='none', edgecolor='k', hatch='//',
                        linewidth=0.6)
                ax.annotate(f"dense (hatched: {r['published']['sparsity']:.0%} sparse)",
                            (r['measured'][key], y + 0.2), xytext=(3, 0), textcoords='offset points', va='center',
                            fontsize=6, color='C0')
                marked = True
        if pub:
            ax.barh([y - 0.2 for y in ys], [r['published'].get(pub) or 0 for r in rows], height=0.4, color='C1',
                    alpha=0.6, label='published')
            for y, r in zip(ys, rows):
                note = conventions(r['published']).get(pub)
                value = r['published'].get(pub)
                if note and value:
                    ax.barh(y - 0.2, value, height=0.4, color='none', edgecolor='C1', hatch='xx', linewidth=0.6)
                    ax.annotate(note, (value, y - 0.2), xytext=(3, 0), textcoords='offset points', va='center',
                                fontsize=6, color='C1')
                    marked = True
        ax.set_title(title, fontsize=9)
        ax.set_yticks(ys)
        ax.set_yticklabels(names if ax is axes[0] else [''] * len(rows), fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis='x', alpha=.3)
        ax.margins(x=0.25)  # room for the notes
    handles = [Patch(color='C0', label='measured (dense, backbone only)'),
               Patch(color='C1', alpha=0.6, label='published')]
    if marked:
        handles += [Patch(facecolor='none', edgecolor='k', hatch='//', label='measured at the published sparsity'),
                    Patch(facecolor='none', edgecolor='C1', hatch='xx',
                          label='published under another convention (note)')]
    fig.legend(handles=handles, loc='lower center', ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f'Backbones on {describe_device(device)}, {args.size}², amp {args.amp}; (published ImageNet top-1)',
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    import torch
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if args.threads:
        torch.set_num_threads(args.threads)

    import mmrevcol  # noqa: F401
    from mmengine.config import Config, DictAction
    registry = load_registry(args.registry)
    configs = select(args, registry)
    if not configs:
        raise MissingInputError('no config to compare: none of the registry\'s configs exists here and none was '
                                'given')
    overrides = None
    if args.cfg_options:
        parser = argparse.ArgumentParser()
        parser.add_argument('--o', nargs='+', action=DictAction)
        overrides = parser.parse_args(['--o', *args.cfg_options]).o
    rows = []
    for c in configs:
        cfg = Config.fromfile(osp.join(REPO, c))
        if overrides:
            cfg.merge_from_dict(overrides)
        entry = registry.get(c, {})
        name = entry.get('name', osp.splitext(osp.basename(c))[0])
        print(f'[{name}] {c}', flush=True)
        m = measure(cfg, args, device)
        if not args.skip_flops:
            sparsity = entry.get('sparsity') or 0.
            counted = count_flops(cfg, args.size, sparsity)
            if sparsity:
                m['gflops'], m['gflops_sparse'], params = counted[0] / 1e9, counted[1] / 1e9, counted[2]
                m['params_sparse_m'] = params / 1e6
            else:
                m['gflops'] = counted / 1e9
        print('   ' + ', '.join(f'{h} {_fmt(m.get(k), k)}' for k, h in MEASURED + SPARSE if k in m), flush=True)
        rows.append(dict(name=name, config=c, measured=m, published=entry))
    write_outputs(rows, args, device, args.out)
    return rows


if __name__ == '__main__':
    _pin_malloc_and_reexec(sys.argv[1:])
    sys.exit(run_tool(main))
