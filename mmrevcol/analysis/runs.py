"""The two analyses end to end, as ``tools/analysis/cka.py`` and ``tools/analysis/erf.py`` run them: config(s) and
checkpoint(s) in, PNGs and tables under an output folder out (docs/analysis.md)."""
import csv
import json
import os
import os.path as osp
import re
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from . import plotting
from .cka import MIN_UNBIASED, cka_from_grams, gram_linear
from .erf import THRESHOLDS, contribution_map, erf_heatmap, high_contribution_area
from .features import (AnalysisInputError, ImageSet, build_backbone, column_features, is_column_backbone,
                       load_config, load_dataset_images, load_image_folder, preprocessing, stage_features)

__all__ = ['load_images', 'run_cka', 'run_erf']

Log = Optional[Callable[[str], None]]


def _log(log: Log, message: str) -> None:
    if log is not None:
        log(message)


def load_images(cfg, images: Optional[str], dataset: Optional[str], size: int, num_images: Optional[int],
                norm_cfg=None) -> ImageSet:
    """Images from a folder (``images``) or from the config's ``<dataset>_dataloader`` (exactly one of them),
    normalised as the data preprocessor of ``norm_cfg`` (default ``cfg``) does."""
    if (images is None) == (dataset is None):
        raise AnalysisInputError('give either an image folder or a dataset split of the config')
    if not isinstance(size, int) or size < 1:
        raise AnalysisInputError(f'size must be a positive int, got {size!r}')
    mean, std, rgb = preprocessing(norm_cfg or cfg)
    if images is not None:
        return load_image_folder(images, size, num_images, mean, std, rgb)
    return load_dataset_images(cfg, dataset, size, num_images, mean, std, rgb)


def _write_json(path: str, payload: dict) -> str:
    with open(path, 'w') as f:
        json.dump(payload, f, indent=1)
    return path


def _pooled(feature: torch.Tensor) -> torch.Tensor:
    return feature.mean(dim=(-2, -1)) if feature.dim() == 4 else feature


# ----------------------------------------------------------------------------------------------------------------
def run_cka(config: str, checkpoint: Optional[str], out_dir: str, images: Optional[str] = None,
            dataset: Optional[str] = None, cfg_options: Optional[dict] = None, num_images: Optional[int] = 32,
            size: int = 224, batch_size: int = 8, device: str = 'cpu', target: str = 'auto', mode: str = 'auto',
            debiased: bool = True, seed: int = 0, dpi: int = 110, log: Log = None) -> dict:
    """Linear CKA of a backbone's features with the input image and with the labels (or the final features).

    ``mode='columns'`` (RevCol, RevCol-ViT; what ``auto`` picks for them): every level of every column against
    (a) the input image, flattened at full resolution as the official ``tools/visual.py``, and (b) the target:
    the labels (one-hot; class fractions per cell for segmentation) when the images have them, else the final
    features (global average pool of the last column's top level). Writes ``cka_levels.png`` (one panel per
    level, CKA across the columns), ``cka_heatmap.png`` (levels x columns) and ``cka.json``.

    ``mode='stages'`` (any backbone): CKA between every pair of its returned stages, and of each stage with the
    image and the target (final features: the pooled last stage). Writes ``cka_stages.png`` and ``cka.json``.

    Args:
        config (str): Config file (a detector / segmentor / classifier config, or a bare backbone's).
        checkpoint (str, optional): Backbone or whole-model checkpoint (strict loading policy); None: random init
            (the family's own initialisation, seeded).
        out_dir (str): Folder for the PNGs and ``cka.json``.
        images (str, optional): Folder of images (class sub-folders give labels).
        dataset (str, optional): Instead of ``images``: ``train``/``val``/``test``, the config's dataset.
        target (str): ``auto`` (labels when there are, else final features), ``labels`` or ``final``.
        debiased (bool): Unbiased HSIC (official; needs at least 4 images) or the biased one.
        dpi (int): Resolution of the PNGs.

    Returns:
        dict: What ``cka.json`` holds, plus ``files`` (the PNGs written).
    """
    if target not in ('auto', 'labels', 'final'):
        raise AnalysisInputError(f"target must be 'auto', 'labels' or 'final', got {target!r}")
    if mode not in ('auto', 'columns', 'stages'):
        raise AnalysisInputError(f"mode must be 'auto', 'columns' or 'stages', got {mode!r}")
    cfg = load_config(config, cfg_options)
    data = load_images(cfg, images, dataset, size, num_images)
    if debiased and len(data) < MIN_UNBIASED:
        raise AnalysisInputError(f'debiased CKA needs at least {MIN_UNBIASED} images, got {len(data)} '
                                 '(more images, or --biased)')
    labels = data.label_matrix()
    if target == 'labels' and labels is None:
        raise AnalysisInputError('target=labels, but the images have no labels (use a folder of class '
                                 'sub-folders, a dataset with labels, or --target final)')
    backbone = build_backbone(cfg, checkpoint, device, seed)
    columns = is_column_backbone(backbone)
    if mode == 'columns' and not columns:
        raise AnalysisInputError(f'mode=columns needs a column backbone (RevCol, RevColViT), got '
                                 f'{type(backbone).__name__}')
    mode = 'columns' if columns and mode != 'stages' else 'stages'
    _log(log, f'{type(backbone).__name__}: {len(data)} images at {size}x{size}, mode {mode}')

    use_labels = labels is not None and target in ('auto', 'labels')
    target_name = 'labels' if use_labels else 'final features'
    grams = {'image': gram_linear(data.images)}
    if use_labels:
        grams[target_name] = gram_linear(labels)
    os.makedirs(out_dir, exist_ok=True)
    result = dict(config=config, checkpoint=checkpoint, backbone=type(backbone).__name__, mode=mode,
                  num_images=len(data), size=size, debiased=debiased, target=target_name, images=data.names)
    label = 'debiased' if debiased else 'biased'
    title = f'{osp.basename(config)} ({checkpoint and osp.basename(checkpoint) or "random init"}), ' \
            f'{len(data)} images, {label} CKA'

    if mode == 'columns':
        feats = column_features(backbone, data.images, batch_size)
        if not use_labels:
            grams[target_name] = gram_linear(_pooled(feats[-1][-1]))
        num_levels = len(feats[0])
        values = {name: [[0.0] * len(feats) for _ in range(num_levels)] for name in grams}
        for j, column in enumerate(feats):
            for level, feature in enumerate(column):
                gram = gram_linear(feature)
                for name, ref in grams.items():
                    values[name][level][j] = cka_from_grams(gram, ref, debiased)
        result['cka'] = values  # cka[reference][level][column]
        files = [plotting.plot_cka_levels(values, osp.join(out_dir, 'cka_levels.png'), title, f'CKA ({label})', dpi),
                 plotting.plot_cka_heatmaps(values, osp.join(out_dir, 'cka_heatmap.png'), title, dpi)]
    else:
        feats = stage_features(backbone, data.images, batch_size)
        if not use_labels:
            grams[target_name] = gram_linear(_pooled(feats[-1]))
        stage_grams = [gram_linear(f) for f in feats]
        names = [f'out {i}' for i in range(len(feats))]
        matrix = [[cka_from_grams(a, b, debiased) for b in stage_grams] for a in stage_grams]
        refs = {name: [cka_from_grams(g, ref, debiased) for g in stage_grams] for name, ref in grams.items()}
        result.update(stages=matrix, cka=refs, shapes=[list(f.shape[1:]) for f in feats])
        files = [plotting.plot_cka_stages(matrix, refs, names, osp.join(out_dir, 'cka_stages.png'), title, dpi)]
    result['files'] = files + [_write_json(osp.join(out_dir, 'cka.json'), result)]
    return result


# ----------------------------------------------------------------------------------------------------------------
def _per_config(value, n: int, what: str) -> list:
    """One value for every config, or a list with one per config."""
    if value is None or not isinstance(value, (list, tuple)):
        return [value] * n
    if len(value) == 1:
        return list(value) * n
    if len(value) != n:
        raise AnalysisInputError(f'{what}: give one for all configs or one per config ({n}), got {len(value)}')
    return list(value)


def _unique_names(configs: Sequence[str], names: Optional[Sequence[str]]) -> List[str]:
    if names is not None:
        if len(names) != len(configs):
            raise AnalysisInputError(f'names: one per config ({len(configs)}), got {len(names)}')
        names = list(names)
    else:
        names = [osp.splitext(osp.basename(c))[0] for c in configs]
    seen: Dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f'{name}_{seen[name]}')
    return unique


def _slug(name: str) -> str:
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_') or 'model'


def _write_tables(rows: List[dict], thresholds: Sequence[float], out_dir: str) -> List[str]:
    columns = ['name', 'config', 'checkpoint', 'output', 'stride', 'map', 'images']
    for t in thresholds:
        columns += [f'side@{t:g}', f'ratio@{t:g}']
    csv_path, md_path = osp.join(out_dir, 'erf_area_ratios.csv'), osp.join(out_dir, 'erf_area_ratios.md')
    with open(csv_path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    header = ['name', 'output (stride)', 'images'] + [f'{t * 100:g}%' for t in thresholds]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in rows:
        cells = [row['name'], f"{row['output']} ({row['stride']})", str(row['images'])]
        cells += [f"{row[f'ratio@{t:g}']:.3f}" for t in thresholds]
        lines.append('| ' + ' | '.join(cells) + ' |')
    with open(md_path, 'w') as f:
        f.write('High-contribution area ratio: the smallest centred square holding t of the contribution, as a '
                'share of the image.\n\n' + '\n'.join(lines) + '\n')
    return [csv_path, md_path]


def run_erf(configs: Sequence[str], out_dir: str, images: Optional[str] = None, dataset: Optional[str] = None,
            checkpoints: Optional[Sequence[Optional[str]]] = None,
            cfg_options: Union[None, dict, Sequence[Optional[dict]]] = None, names: Optional[Sequence[str]] = None,
            stage: int = -1, stride: Optional[int] = None, num_images: Optional[int] = 20, size: int = 224,
            batch_size: int = 4, device: str = 'cpu', seed: int = 0, log_scale_ratios: bool = False,
            thresholds: Sequence[float] = THRESHOLDS, title: str = '', dpi: int = 110, log: Log = None) -> dict:
    """Effective receptive fields of the backbones of ``configs`` on the same images.

    Per backbone: ``erf_<name>.png`` (heat map), ``erf_<name>.npy`` (the raw contribution map); for all:
    ``erf_compare.png`` (side by side, same colour scale), ``erf_area_ratios.{csv,md}`` (RepLKNet's
    high-contribution area ratios at ``thresholds``) and ``erf.json``.

    Args:
        configs (Sequence[str]): Config files.
        out_dir (str): Output folder.
        images, dataset: The images (:func:`load_images`); the config's dataset is the first config's.
        checkpoints (Sequence[str | None], optional): One per config (None: random init), or one for all.
        cfg_options (dict | Sequence[dict], optional): Overrides for every config, or one dict per config.
        names (Sequence[str], optional): Titles (default: the config file names).
        stage (int): Index into each backbone's outputs (default the last).
        stride (int, optional): Instead of ``stage``: the output at this stride (e.g. 32 to compare backbones
            whose ``out_indices`` differ).
        log_scale_ratios (bool): Area ratios on RepLKNet's ``log10(x + 1)`` map instead of the raw one.
        dpi (int): Resolution of the PNGs.

    Returns:
        dict: What ``erf.json`` holds (per backbone: output index, stride, area ratios), plus ``files``.
    """
    if not configs:
        raise AnalysisInputError('no config given')
    n = len(configs)
    checkpoints = _per_config(checkpoints, n, 'checkpoints')
    options = _per_config(cfg_options, n, 'cfg_options')
    names = _unique_names(configs, names)
    os.makedirs(out_dir, exist_ok=True)
    models, heats, ratios, rows, files = [], [], [], [], []
    first_cfg = None
    for config, ckpt, opts, name in zip(configs, checkpoints, options, names):
        cfg = load_config(config, opts)
        first_cfg = first_cfg or cfg
        # the same images for every backbone (the first config's dataset), each normalised as its config says
        data = load_images(first_cfg, images, dataset, size, num_images, norm_cfg=cfg)
        backbone = build_backbone(cfg, ckpt, device, seed)
        _log(log, f'{name}: {type(backbone).__name__}, {len(data)} images at {size}x{size}')
        contribution, index, map_hw = contribution_map(backbone, data.images.to(device), stage, stride, batch_size)
        out_stride = round(size / map_hw[0])
        heat = erf_heatmap(contribution)
        area = high_contribution_area(contribution, thresholds, log_scale_ratios)
        stem = _slug(name)
        np.save(osp.join(out_dir, f'erf_{stem}.npy'), contribution.numpy())
        files.append(plotting.plot_erf(heat.numpy(), osp.join(out_dir, f'erf_{stem}.png'),
                                       f'{name}\noutput {index} (stride {out_stride})', area, dpi))
        row = dict(name=name, config=config, checkpoint=ckpt or 'none', output=index, stride=out_stride,
                   map=f'{map_hw[0]}x{map_hw[1]}', images=len(data))
        for t, (side, ratio) in area.items():
            row[f'side@{t:g}'], row[f'ratio@{t:g}'] = side, ratio
        models.append(dict(row, backbone=type(backbone).__name__,
                           area_ratio={f'{t:g}': dict(side=s, ratio=r) for t, (s, r) in area.items()}))
        heats.append(heat.numpy())
        ratios.append(area)
        rows.append(row)
        del backbone
    files.append(plotting.plot_erf_grid(heats, names, osp.join(out_dir, 'erf_compare.png'),
                                        title or f'ERF, {rows[0]["images"]} images at {size}x{size}', ratios, dpi))
    files += _write_tables(rows, thresholds, out_dir)
    result = dict(size=size, stage=stage, stride=stride, log_scale_ratios=log_scale_ratios, models=models)
    files.append(_write_json(osp.join(out_dir, 'erf.json'), result))
    result['files'] = files
    return result
