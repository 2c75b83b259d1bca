"""Linear CKA of a backbone's features with the input image and the labels (or the final features), as PNGs.

RevCol / RevCol-ViT: every level of every column (the paper's "information kept along the columns" curves and the
official tools/visual.py heat maps). Any other backbone: CKA between its stages. docs/analysis.md explains the
pictures.

    # a RevCol-T from a checkpoint, on 32 CamVid val images at 224x224
    .venv/bin/python tools/analysis/cka.py configs/upernet_revcol_t_ade20k.py checkpoints/revcol_tiny_1k.pth \
        --images ../shared/data/camvid/img_dir/val --num-images 32 --size 224 --out work_dirs/cka_revcol_t
    # random init ('none'), a reduced arch, the config's own val dataset (labels from its annotations)
    .venv/bin/python tools/analysis/cka.py configs/acceptance/upernet_revcol_camvid.py none --dataset val \
        --out work_dirs/cka_camvid \
        --cfg-options model.backbone.arch="dict(channels=[16,32,48,64],layers=[1,1,2,1],num_columns=4)"

Writes under --out: cka_levels.png and cka_heatmap.png (columns mode) or cka_stages.png (stages mode), cka.json.
"""
import argparse
import os.path as osp
import sys

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mmrevcol.utils.cli import LiteralDictAction, run_tool  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='config file (detector / segmentor / classifier, or a bare backbone)')
    p.add_argument('checkpoint', help="backbone or whole-model checkpoint (strict loading), or 'none' for the "
                   "family's random initialisation")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', help='folder of images (class sub-folders give labels)')
    source.add_argument('--dataset', choices=('train', 'val', 'test'),
                        help="the config's <split>_dataloader dataset instead of a folder (its labels too)")
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--num-images', type=int, default=32, help='images used, spread evenly over the folder/dataset')
    p.add_argument('--size', type=int, default=224, help='images are resized (shorter side) and centre-cropped')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--device', default=None, help='cuda / cpu (default: cuda when available)')
    p.add_argument('--target', choices=('auto', 'labels', 'final'), default='auto',
                   help='second reference: labels (auto: when the images have them) or the final features')
    p.add_argument('--mode', choices=('auto', 'columns', 'stages'), default='auto',
                   help='columns: every level of every column (RevCol, RevColViT); stages: between the outputs')
    p.add_argument('--biased', action='store_true', help='biased HSIC instead of the unbiased (debiased CKA)')
    p.add_argument('--dpi', type=int, default=110, help='resolution of the PNGs')
    p.add_argument('--seed', type=int, default=0, help='seed of the random initialisation')
    p.add_argument('--cfg-options', nargs='+', action=LiteralDictAction, help='key=value overrides of the config')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    import mmrevcol  # noqa: F401  (registers the project's modules)
    from mmrevcol.analysis import run_cka
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    result = run_cka(args.config, checkpoint, args.out, images=args.images, dataset=args.dataset,
                     cfg_options=args.cfg_options, num_images=args.num_images, size=args.size,
                     batch_size=args.batch_size, device=device, target=args.target, mode=args.mode,
                     debiased=not args.biased, seed=args.seed, dpi=args.dpi, log=print)
    for name, values in result['cka'].items():
        print(f'CKA with {name}:')
        rows = values if result['mode'] == 'columns' else [values]
        for i, row in enumerate(rows):
            lead = f'  level {i}:' if result['mode'] == 'columns' else '  outputs:'
            print(lead, ' '.join(f'{v:6.3f}' for v in row))
    for path in result['files']:
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
