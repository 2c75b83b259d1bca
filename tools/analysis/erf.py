"""Effective receptive fields of backbones on the same images, side by side, with RepLKNet's area ratios.

The gradient of the centre of an output map with respect to the input, accumulated (absolute values) over the
images; drawn as log10 relative to its maximum, min-max normalised. docs/analysis.md explains the pictures.

    # ConvNeXt-T vs SLaK-T vs RevCol-T vs HIRI-ViT-S at random init, the stride-32 output of each
    .venv/bin/python tools/analysis/erf.py configs/convnext/upernet_convnext_t_ade20k.py \
        configs/slak/upernet_slak_t_ade20k.py configs/upernet_revcol_t_ade20k.py \
        configs/hiri_vit/upernet_hiri_vit_s_ade20k.py --names ConvNeXt-T SLaK-T RevCol-T HIRI-ViT-S \
        --stride 32 --images ../shared/data/camvid/img_dir/val --num-images 20 --size 224 --out work_dirs/erf
    # from checkpoints (one per config; 'none' = random init), per-config overrides (one --cfg-options per config)
    .venv/bin/python tools/analysis/erf.py A.py B.py --checkpoints a.pth none \
        --cfg-options model.backbone.arch=... --cfg-options model.backbone.kernel_size=[13,11,9,7,3] ...

Writes under --out: erf_<name>.png and erf_<name>.npy per backbone, erf_compare.png, erf_area_ratios.{csv,md},
erf.json.
"""
import argparse
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mmrevcol.utils.cli import LiteralDictAction, run_tool  # noqa: E402


class PerConfigOptions(LiteralDictAction):
    """``--cfg-options`` given once: for every config; given once per config: the i-th for the i-th config."""

    def __call__(self, parser, namespace, values, option_string=None):
        scratch = argparse.Namespace(**{self.dest: None})
        super().__call__(parser, scratch, values, option_string)
        setattr(namespace, self.dest, list(getattr(namespace, self.dest, None) or []) + [getattr(scratch, self.dest)])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('configs', nargs='+', help='config files (detector / segmentor / classifier, or bare backbones)')
    p.add_argument('--checkpoints', nargs='+', default=None,
                   help="one per config, or one for all: checkpoint files or 'none' (random init; the default)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', help='folder of images')
    source.add_argument('--dataset', choices=('train', 'val', 'test'),
                        help="the first config's <split>_dataloader dataset instead of a folder")
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--names', nargs='+', default=None, help='one title per config (default: file names)')
    p.add_argument('--stage', type=int, default=-1, help='index into the backbone outputs (default: the last)')
    p.add_argument('--stride', type=int, default=None,
                   help='instead of --stage: the output at this stride (compares backbones whose stages differ)')
    p.add_argument('--num-images', type=int, default=20, help='images used, spread evenly over the folder/dataset')
    p.add_argument('--size', type=int, default=224, help='images are resized (shorter side) and centre-cropped')
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--device', default=None, help='cuda / cpu (default: cuda when available)')
    p.add_argument('--log-ratios', action='store_true',
                   help="area ratios on RepLKNet's log10(x + 1) map (magnitude-dependent) instead of the raw one")
    p.add_argument('--title', default='', help='title of the comparison figure')
    p.add_argument('--dpi', type=int, default=110, help='resolution of the PNGs')
    p.add_argument('--seed', type=int, default=0, help='seed of the random initialisations')
    p.add_argument('--cfg-options', nargs='+', action=PerConfigOptions,
                   help='key=value overrides: once for all configs, or repeated once per config')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    import mmrevcol  # noqa: F401  (registers the project's modules)
    from mmrevcol.analysis import run_erf
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    checkpoints = None if args.checkpoints is None else [
        None if c.lower() == 'none' else c for c in args.checkpoints]
    result = run_erf(args.configs, args.out, images=args.images, dataset=args.dataset, checkpoints=checkpoints,
                     cfg_options=args.cfg_options, names=args.names, stage=args.stage, stride=args.stride,
                     num_images=args.num_images, size=args.size, batch_size=args.batch_size, device=device,
                     seed=args.seed, log_scale_ratios=args.log_ratios, title=args.title, dpi=args.dpi,
                     log=print)
    for model in result['models']:
        ratios = ', '.join(f"{t}: {v['ratio']:.3f}" for t, v in model['area_ratio'].items())
        print(f"{model['name']}: output {model['output']} (stride {model['stride']}, map {model['map']}), "
              f'area ratio {ratios}')
    for path in result['files']:
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
