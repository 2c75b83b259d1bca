"""PNG figures of the analyses (matplotlib, Agg backend: no display needed)."""
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ['plot_cka_levels', 'plot_cka_heatmaps', 'plot_cka_stages', 'plot_erf', 'plot_erf_grid']


def _pyplot():
    import matplotlib
    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str, dpi: int) -> str:
    """Save as a 256-colour palette PNG: the colour maps have 256 entries anyway, and the pixel-level ERF maps
    compress to about a third of their RGB size."""
    from PIL import Image
    fig.savefig(path, dpi=dpi, bbox_inches='tight')
    _pyplot().close(fig)
    with Image.open(path) as im:
        palette = im.convert('RGB').quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    palette.save(path, optimize=True)
    return path


def _annotated(ax, data: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str,
               vmin: float = 0.0, vmax: float = 1.0):
    im = ax.imshow(data, cmap='viridis', vmin=vmin, vmax=vmax, aspect='auto')
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels))
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels))
    ax.set_title(title, fontsize=10)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            value = data[i, j]
            text = 'nan' if np.isnan(value) else f'{value:.2f}'
            bright = not np.isnan(value) and (value - vmin) / max(vmax - vmin, 1e-12) > 0.6
            ax.text(j, i, text, ha='center', va='center', fontsize=8, color='black' if bright else 'white')
    return im


def plot_cka_levels(curves: Dict[str, List[List[float]]], path: str, title: str = '', ylabel: str = 'CKA',
                    dpi: int = 110) -> str:
    """One panel per level: CKA of that level with each reference (``curves[name][level][column]``) across the
    columns, the paper's "information along the columns" plot."""
    plt = _pyplot()
    names = list(curves)
    num_levels = len(curves[names[0]])
    fig, axes = plt.subplots(1, num_levels, figsize=(3.0 * num_levels, 2.8), sharey=True, squeeze=False)
    for level, ax in enumerate(axes[0]):
        for name in names:
            values = curves[name][level]
            ax.plot(range(len(values)), values, marker='o', label=name)
        ax.set_title(f'level {level}', fontsize=10)
        ax.set_xlabel('column')
        ax.set_xticks(range(len(curves[names[0]][level])))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8, loc='best')
    if title:
        fig.suptitle(title, fontsize=10, y=1.04)
    return _save(fig, path, dpi)


def plot_cka_heatmaps(maps: Dict[str, List[List[float]]], path: str, title: str = '', dpi: int = 110) -> str:
    """One heat map per reference: levels (rows) x columns, annotated (the official ``cka.png`` layout)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 3.2), squeeze=False)
    low = min(0.0, float(np.nanmin([np.nanmin(np.asarray(v, dtype=np.float64)) for v in maps.values()])))
    im = None
    for k, (ax, (name, values)) in enumerate(zip(axes[0], maps.items())):
        data = np.asarray(values, dtype=np.float64)
        im = _annotated(ax, data, [f'level {i}' for i in range(data.shape[0])],
                        [f'col {j}' for j in range(data.shape[1])], f'CKA with {name}', vmin=low)
        if k:
            ax.tick_params(labelleft=False)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10, y=1.04)
    return _save(fig, path, dpi)


def plot_cka_stages(matrix: List[List[float]], references: Dict[str, List[float]], stage_names: Sequence[str],
                    path: str, title: str = '', dpi: int = 110) -> str:
    """Stage x stage CKA heat map, and each stage's CKA with the references (image, labels / final features)."""
    plt = _pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw=dict(width_ratios=[1.1, 1]))
    data = np.asarray(matrix, dtype=np.float64)
    im = _annotated(ax0, data, stage_names, stage_names, 'CKA between stages', vmin=min(0.0, float(np.nanmin(data))))
    fig.colorbar(im, ax=ax0, shrink=0.8)
    for name, values in references.items():
        ax1.plot(range(len(values)), values, marker='o', label=name)
    ax1.set_xticks(range(len(stage_names)), labels=list(stage_names))
    ax1.set_ylabel('CKA')
    ax1.set_title('CKA with the references', fontsize=10)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10, y=1.04)
    return _save(fig, path, dpi)


def _erf_axis(ax, heat: np.ndarray, title: str, ratios: Optional[Dict[float, tuple]] = None):
    im = ax.imshow(heat, cmap='RdYlGn', vmin=0, vmax=1, interpolation='nearest')
    ax.set_xticks([])
    ax.set_yticks([])
    if ratios:
        items = [f'{t * 100:g}%: {r:.3f}' for t, (_, r) in ratios.items()]
        half = (len(items) + 1) // 2
        title = f'{title}\narea ratio ' + '  '.join(items[:half]) + '\n' + '  '.join(items[half:])
    ax.set_title(title, fontsize=8)
    return im


def plot_erf(heat, path: str, title: str = '', ratios: Optional[Dict[float, tuple]] = None, dpi: int = 110) -> str:
    """One ERF heat map (:func:`mmrevcol.analysis.erf.erf_heatmap`), with its area ratios in the title."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    im = _erf_axis(ax, np.asarray(heat), title, ratios)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path, dpi)


def plot_erf_grid(heats: Sequence, titles: Sequence[str], path: str, suptitle: str = '',
                  ratios: Optional[Sequence[Dict[float, tuple]]] = None, dpi: int = 110) -> str:
    """ERF heat maps side by side (same images, same colour scale)."""
    plt = _pyplot()
    n = len(heats)
    fig, axes = plt.subplots(1, n, figsize=(3.9 * n, 4.0), squeeze=False)
    im = None
    for k, ax in enumerate(axes[0]):
        im = _erf_axis(ax, np.asarray(heats[k]), titles[k], ratios[k] if ratios else None)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.75)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10, y=1.02)
    return _save(fig, path, dpi)
