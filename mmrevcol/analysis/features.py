"""Models and images for the analysis tools: a backbone from a config (+ checkpoint), images from a folder or from a
config's dataset, and the features the analyses look at (every level of every column of a RevCol / RevCol-ViT,
every returned stage of any backbone).

Models are built the project's normal way: ``Config.fromfile`` (+ ``--cfg-options``) -> ``MODELS.build`` of the
config's ``model.backbone`` (or of ``model`` itself when the config describes a bare backbone), its family's own
initialisation (seeded), then a checkpoint through the strict loading policy
(:func:`mmrevcol.checkpoint.load_pretrained`: official layouts converted, every parameter loaded or a named error).
"""
import logging
import os
import os.path as osp
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..utils.errors import ExpectedError

__all__ = [
    'AnalysisInputError', 'ImageSet', 'IMAGE_EXTENSIONS', 'load_config', 'backbone_config', 'build_backbone',
    'preprocessing', 'load_image_folder', 'load_dataset_images', 'is_column_backbone', 'column_features',
    'stage_features', 'as_outputs'
]

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class AnalysisInputError(ExpectedError):
    """A missing or unusable input of an analysis (config, checkpoint, image folder, dataset, option)."""


# ----------------------------------------------------------------------------------------------------------------
# config and model
def load_config(path: str, cfg_options: Optional[dict] = None):
    """``Config.fromfile(path)`` with ``cfg_options`` merged, and the config's ``custom_imports`` imported."""
    from mmengine.config import Config
    from mmengine.utils import import_modules_from_strings
    if not osp.isfile(path):
        raise AnalysisInputError(f'config not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    return cfg


def backbone_config(cfg) -> dict:
    """The backbone to build: ``model.backbone``, or ``model`` when the config describes a bare backbone.

    ``init_cfg`` is dropped (no download, no pretrained file needed): weights come from the checkpoint argument.
    """
    import copy
    if 'model' not in cfg:
        raise AnalysisInputError(f'config {cfg.filename} has no `model`')
    model = cfg.model
    backbone = copy.deepcopy(model.get('backbone', model))
    backbone = backbone.to_dict() if hasattr(backbone, 'to_dict') else dict(backbone)
    backbone['init_cfg'] = None
    if 'pretrained' in backbone:
        backbone['pretrained'] = None
    return backbone


@contextmanager
def _quiet_mmengine():
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_backbone(cfg, checkpoint: Optional[str] = None, device='cpu', seed: int = 0) -> nn.Module:
    """The config's backbone in eval mode on ``device``: its family's initialisation under ``seed``, then
    ``checkpoint`` (a backbone or whole-model checkpoint, any known layout) loaded strictly; None: random init.

    SyncBN is turned into BN (one process, maybe no CUDA).
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope

    from ..checkpoint import CheckpointMismatchError, load_pretrained
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    torch.manual_seed(seed)
    try:
        backbone = MODELS.build(backbone_config(cfg))
    except (KeyError, ValueError, TypeError) as e:  # unknown type, invalid arch: the user's config or options
        raise AnalysisInputError(f'cannot build the backbone of {cfg.filename}: {e}') from e
    backbone = revert_sync_batchnorm(backbone)
    with _quiet_mmengine():  # mmengine lists every initialised parameter at INFO level
        backbone.init_weights()
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise AnalysisInputError(f'checkpoint not found: {checkpoint}')
        try:
            load_pretrained(backbone, checkpoint)
        except CheckpointMismatchError as e:
            raise AnalysisInputError(str(e)) from e
    backbone.eval()
    return backbone.to(device)


# ----------------------------------------------------------------------------------------------------------------
# images
@dataclass
class ImageSet:
    """Normalised square images and what is known about them.

    Attributes:
        images: ``(n, 3, size, size)`` float32, normalised as the config's data preprocessor does.
        names: Where each image came from.
        labels: ``(n,)`` class indices (a classification dataset, or a folder of class sub-folders), ``(n, d)``
            dense label maps (per-pixel one-hot of a segmentation dataset, pooled), or None.
        num_classes: Number of classes of ``labels`` (0 when there are none).
        rgb_mean, rgb_std: How the images were normalised (to show them).
    """
    images: Tensor
    names: List[str]
    labels: Optional[Tensor] = None
    num_classes: int = 0
    rgb_mean: Tuple[float, ...] = IMAGENET_MEAN
    rgb_std: Tuple[float, ...] = IMAGENET_STD
    class_names: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]

    def label_matrix(self) -> Optional[Tensor]:
        """Labels as one representation per image: one-hot vectors for class indices, dense maps as they are."""
        if self.labels is None:
            return None
        if self.labels.dim() == 1:
            return torch.nn.functional.one_hot(self.labels, self.num_classes).float()
        return self.labels.float()


def preprocessing(cfg) -> Tuple[Tuple[float, ...], Tuple[float, ...], bool]:
    """``(mean, std, rgb)`` of the config's data preprocessor (``model.data_preprocessor`` or the top-level
    ``data_preprocessor`` of mmpretrain configs); ImageNet's RGB statistics when it states none."""
    pre = cfg.get('model', {}).get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    mean = tuple(float(v) for v in (pre.get('mean') or IMAGENET_MEAN))
    std = tuple(float(v) for v in (pre.get('std') or IMAGENET_STD))
    rgb = bool(pre.get('bgr_to_rgb', pre.get('to_rgb', True)))
    return mean, std, rgb


def _resize_center_crop(img: np.ndarray, size: int, interpolation: str = 'bilinear') -> np.ndarray:
    """Shorter side to ``size`` (aspect ratio kept), then the centre ``size x size`` crop."""
    import mmcv
    h, w = img.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = mmcv.imresize(img, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return img[top:top + size, left:left + size]


def _normalise(imgs: List[np.ndarray], mean, std) -> Tensor:
    x = torch.from_numpy(np.stack(imgs).astype(np.float32)).permute(0, 3, 1, 2)
    return ((x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)).contiguous()


def _spread(items: Sequence, num: Optional[int]) -> list:
    """``num`` items spread evenly over ``items`` (all when ``num`` is None or larger): consecutive video frames
    are near duplicates, evenly spaced ones are not."""
    items = list(items)
    if num is None or num >= len(items):
        return items
    return [items[int(i * len(items) / num)] for i in range(num)]


def _check_count(num_images: Optional[int]) -> None:
    if num_images is not None and (not isinstance(num_images, int) or num_images < 1):
        raise AnalysisInputError(f'num_images must be a positive int, got {num_images!r}')


def load_image_folder(folder: str, size: int, num_images: Optional[int] = None, mean=IMAGENET_MEAN,
                      std=IMAGENET_STD, rgb: bool = True) -> ImageSet:
    """Images of ``folder`` (sorted, ``num_images`` spread evenly), resized (shorter side) and centre-cropped to
    ``size``, normalised with ``mean``/``std`` in RGB (``rgb``) or BGR order.

    A folder of class sub-folders (``DIR/<class>/*.jpg``, as torchvision's ImageFolder) gives labels: the
    sub-folders in sorted order are the classes. Images are decoded in their stored pixel frame (EXIF orientation
    ignored: the project's image-orientation policy).
    """
    import mmcv
    _check_count(num_images)
    if not osp.isdir(folder):
        raise AnalysisInputError(f'image folder not found: {folder}')
    entries = sorted(os.listdir(folder))
    files = [osp.join(folder, f) for f in entries if f.lower().endswith(IMAGE_EXTENSIONS)]
    labels, classes = None, []
    if not files:
        classes = [d for d in entries if osp.isdir(osp.join(folder, d))]
        pairs = [(osp.join(folder, c, f), i) for i, c in enumerate(classes)
                 for f in sorted(os.listdir(osp.join(folder, c))) if f.lower().endswith(IMAGE_EXTENSIONS)]
        pairs = _spread(pairs, num_images)
        files = [p for p, _ in pairs]
        labels = torch.tensor([i for _, i in pairs], dtype=torch.long) if pairs else None
    else:
        files = _spread(files, num_images)
    if not files:
        raise AnalysisInputError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {folder} or its sub-folders')
    imgs = []
    for path in files:
        img = mmcv.imread(path, flag='color_ignore_orientation', channel_order='rgb' if rgb else 'bgr')
        if img is None:
            raise AnalysisInputError(f'cannot read image {path}')
        imgs.append(_resize_center_crop(img, size))
    return ImageSet(_normalise(imgs, mean, std), files, labels, len(classes) if labels is not None else 0,
                    mean, std, classes)


def _segmentation_labels(seg: np.ndarray, num_classes: int, ignore_index: int, grid: int) -> Tensor:
    """Per-pixel one-hot of a label map, average-pooled to ``grid x grid`` cells (class fractions per cell),
    flattened; ignored pixels count for no class."""
    seg = torch.from_numpy(seg.astype(np.int64))
    valid = (seg != ignore_index) & (seg >= 0) & (seg < num_classes)
    onehot = torch.nn.functional.one_hot(seg.clamp(0, num_classes - 1), num_classes).permute(2, 0, 1).float()
    onehot = onehot * valid.float()
    return torch.nn.functional.adaptive_avg_pool2d(onehot[None], grid)[0].flatten()


def load_dataset_images(cfg, split: str, size: int, num_images: Optional[int] = None, mean=IMAGENET_MEAN,
                        std=IMAGENET_STD, rgb: bool = True, label_grid: int = 8) -> ImageSet:
    """Images (and labels) of the dataset of the config's ``<split>_dataloader``, through its pipeline, then
    resized and centre-cropped to ``size`` as :func:`load_image_folder` does.

    Labels: ``gt_label`` of classification samples (one index each), or ``gt_sem_seg`` of segmentation samples
    (class fractions in ``label_grid x label_grid`` cells of the crop). Use a split whose pipeline has no random
    augmentation (``val``/``test``).
    """
    import mmcv
    from mmengine.registry import DATASETS, init_default_scope
    _check_count(num_images)
    key = f'{split}_dataloader'
    if not cfg.get(key) or 'dataset' not in cfg[key]:
        raise AnalysisInputError(f'config {cfg.filename} has no {key}.dataset')
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    try:
        dataset = DATASETS.build(cfg[key].dataset)
    except (FileNotFoundError, OSError) as e:
        raise AnalysisInputError(f'cannot load {key}.dataset of {cfg.filename}: {e}') from e
    if len(dataset) == 0:
        raise AnalysisInputError(f'{key}.dataset of {cfg.filename} is empty')
    classes = list(dataset.metainfo.get('classes') or [])
    ignore_index = int(getattr(dataset, 'ignore_index', 255))
    imgs, names, labels = [], [], []
    for index in _spread(range(len(dataset)), num_images):
        item = dataset[index]
        img = item['inputs'].permute(1, 2, 0).numpy()  # packed inputs: (C, H, W) in the loader's BGR order
        if rgb:
            img = img[..., ::-1]
        imgs.append(_resize_center_crop(np.ascontiguousarray(img), size))
        sample = item.get('data_samples')
        names.append(str(sample.metainfo.get('img_path', index)) if sample is not None else str(index))
        if sample is not None and 'gt_label' in sample:
            labels.append(torch.as_tensor(sample.gt_label).reshape(-1)[:1].long())
        elif sample is not None and 'gt_sem_seg' in sample:
            seg = sample.gt_sem_seg.data[0].numpy()
            seg = _resize_center_crop(seg.astype(np.uint8 if seg.max() < 256 else np.float32), size, 'nearest')
            labels.append(_segmentation_labels(seg, len(classes), ignore_index, label_grid))
    label_tensor, num_classes = None, 0
    if labels and len(labels) == len(imgs):
        label_tensor = torch.cat(labels) if labels[0].dim() == 1 and labels[0].numel() == 1 else torch.stack(labels)
        num_classes = len(classes) or int(label_tensor.max()) + 1
    return ImageSet(_normalise(imgs, mean, std), names, label_tensor, num_classes, mean, std, classes)


# ----------------------------------------------------------------------------------------------------------------
# features
def is_column_backbone(backbone: nn.Module) -> bool:
    """A RevCol-like backbone: columns of levels (RevCol, RevCol-ViT)."""
    from ..models.backbones.base import ColumnBackbone
    return isinstance(backbone, ColumnBackbone)


def as_outputs(out) -> Tuple[Tensor, ...]:
    """A backbone's output as a tuple of tensors (some return one tensor, some a list)."""
    if isinstance(out, Tensor):
        return (out, )
    return tuple(out)


def _batches(images: Tensor, batch_size: int):
    for start in range(0, images.shape[0], batch_size):
        yield images[start:start + batch_size]


@torch.no_grad()
def column_features(backbone: nn.Module, images: Tensor, batch_size: int = 8) -> List[List[Tensor]]:
    """Every level of every column of a RevCol / RevCol-ViT: ``features[column][level]``, ``(n, C, H, W)``
    float32 on the CPU.

    Each column's output is taken with a forward hook, so the backbone runs its own ``forward`` unchanged (in
    inference, columns run one after the other, each returning its levels).
    """
    device = next(backbone.parameters()).device
    per_column: List[List[List[Tensor]]] = [[] for _ in backbone.columns]
    handles = []
    for j, column in enumerate(backbone.columns):
        def keep(module, args, out, j=j):
            per_column[j].append([t.float().cpu().contiguous() for t in out])
        handles.append(column.register_forward_hook(keep))
    try:
        for batch in _batches(images, batch_size):
            backbone(batch.to(device))
    finally:
        for h in handles:
            h.remove()
    return [[torch.cat([b[level] for b in batches]) for level in range(len(batches[0]))]
            for batches in per_column]


@torch.no_grad()
def stage_features(backbone: nn.Module, images: Tensor, batch_size: int = 8) -> List[Tensor]:
    """The backbone's outputs (its ``out_indices``) for ``images``, float32 on the CPU."""
    device = next(backbone.parameters()).device
    outs: List[List[Tensor]] = []
    for batch in _batches(images, batch_size):
        for i, t in enumerate(as_outputs(backbone(batch.to(device)))):
            if i == len(outs):
                outs.append([])
            outs[i].append(t.float().cpu().contiguous())
    return [torch.cat(o) for o in outs]
