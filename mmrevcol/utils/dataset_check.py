"""Pre-flight check of the datasets a config trains and evaluates on (``tools/check_dataset.py``, ``--check-data``).

Data faults otherwise show up hours into a run as a traceback naming no file, or never: mmdet drops annotations it
cannot use without a word, a rotated phone picture trains on misaligned boxes. This reads every file once, **the way
the config's pipeline does** (mmcv decoding with the pipeline's ``LoadImageFromFile`` ``color_type`` and backend,
label maps as mmseg's ``LoadAnnotations`` reads them, COCO annotations as mmdet's ``CocoDataset.parse_data_info``
and ``LoadAnnotations`` filter them) and lists, per file, one line per problem.

Errors (exit status 1 in ``tools/check_dataset.py``; ``--check-data`` stops):

* ``missing``, ``unreadable``, ``truncated``: an image or label map that is not there or does not decode fully;
* ``size-mismatch``: the image as the pipeline decodes it differs from its COCO entry's width/height, or from its
  label map (an EXIF orientation tag is named when it is the cause);
* ``exif-orientation`` (error form): the pipeline applies EXIF orientation (``color_type='color'``, mmcv's default)
  to an image whose boxes / polygons / label map are in the stored frame: the targets are misaligned;
* ``unknown-category``: COCO annotations whose ``category_id`` is not in ``categories`` (mmdet drops them);
* ``box-outside``: a COCO box that reaches outside its image;
* ``label-out-of-range``: label values that are neither a class index nor ``ignore_index`` (the loss fails with
  ``Target 200 is out of bounds``), or above 255 (mmseg casts label maps to uint8: they wrap around);
* ``label-channels``: a label map with several channels (an RGB rendering instead of class indices);
* ``too-large`` (error form): more pixels than OpenCV decodes (2^30);
* ``too-small`` (error form): shorter than the model's stride after the pipeline's resize, with no padding.

Warnings (listed, exit status 0):

* ``exif-orientation``: an orientation tag other than "normal": viewers show the image rotated, the pipeline
  decodes the stored frame (the project's policy, ``color_type='color_ignore_orientation'``), the frame of the
  annotations;
* ``empty-box``, ``invalid-polygon``, ``empty-mask``: boxes mmdet drops (no overlap with the image, w or h < 1,
  ``area <= 0``), polygons ``LoadAnnotations`` ignores (odd coordinate count, fewer than 3 points; an instance left
  without any is ignored, box included), masks that rasterise to nothing;
* ``filtered``: an image ``filter_cfg.min_size`` drops, with its annotations;
* ``empty-annotation``: an image without annotations, a label map holding only ``ignore_index``;
* ``too-large``: a decoded image over ``max_image_mb`` (default 1024 MiB as uint8: every data-loader worker decodes
  images whole before any resize);
* ``too-small``: shorter than the model's stride after the pipeline's resize, padded by the data preprocessor.

Each dataset ends with a summary line counting the annotations training would silently lose.
"""
import copy
import json
import os.path as osp
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageFile

__all__ = ['SPLITS', 'Problem', 'PipelineReading', 'check_config', 'check_dataset_cfg', 'format_report',
           'read_image']

SPLITS = ('train', 'val', 'test')
ORIENTATION_TAG = 0x0112
SWAPS_SIZE = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 or 270 degrees
CV2_MAX_PIXELS = 1 << 30  # OpenCV's CV_IO_MAX_IMAGE_PIXELS: larger images do not decode
DEFAULT_MAX_IMAGE_MB = 1024
DEFAULT_STRIDE = 32


@dataclass(frozen=True)
class Problem:
    split: str
    kind: str
    path: str
    detail: str = ''
    severity: str = 'error'  # 'error' or 'warning'

    def __str__(self) -> str:
        return f'[{self.split}] {self.severity:<7} {self.kind:<18} {self.path}' + (
            f': {self.detail}' if self.detail else '')


@dataclass
class PipelineReading:
    """How the config's pipeline reads a dataset: what the check must do the same way."""
    color_type: str = 'color'  # mmcv's LoadImageFromFile default: EXIF orientation applied
    imdecode_backend: str = 'cv2'
    label_backend: str = 'pillow'  # mmseg's LoadAnnotations default
    with_mask: bool = False
    poly2mask: bool = True
    resize: Optional[dict] = None  # the first resizing transform
    padded_to: int = 0  # the data preprocessor pads to a multiple of this (or to a fixed size when > 0)
    stride: int = DEFAULT_STRIDE
    max_image_mb: float = DEFAULT_MAX_IMAGE_MB

    @property
    def applies_orientation(self) -> bool:
        return 'ignore_orientation' not in self.color_type and self.color_type in ('color', 'grayscale')


@dataclass
class _Read:
    kind: Optional[str] = None  # None: decodes completely
    detail: str = ''
    stored: Optional[Tuple[int, int]] = None  # (w, h) as stored in the file
    decoded: Optional[Tuple[int, int]] = None  # (w, h) as the pipeline decodes it
    orientation: Optional[int] = None
    array: Optional[np.ndarray] = None
    severity: str = 'error'
    notes: List[Tuple[str, str, str]] = field(default_factory=list)  # (severity, kind, detail)


# ---------------------------------------------------------------------------------------------------------------
def _orientation(img: Image.Image) -> Optional[int]:
    try:
        value = img.getexif().get(ORIENTATION_TAG)
    except Exception:  # noqa: BLE001  a broken EXIF block does not stop the pipeline
        return None
    return int(value) if isinstance(value, int) else None


def read_image(path: str, reading: Optional[PipelineReading] = None, label: bool = False) -> _Read:
    """Read ``path`` as the pipeline does: integrity (PIL), stored and decoded size, orientation tag, label values.

    Images are decoded with mmcv (the pipeline's ``color_type`` and backend) when their orientation tag could
    change the frame; label maps (``label=True``) always, ``flag='unchanged'`` as mmseg reads them.
    """
    import mmcv
    reading = reading or PipelineReading()
    if not osp.isfile(path):
        return _Read('missing')
    previous = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # some libraries switch it on; a truncated file must raise here
    Image.MAX_IMAGE_PIXELS = None  # sizes are judged below, against the pipeline's limits
    out = _Read()
    try:
        with Image.open(path) as img:
            out.stored = img.size
            pixels = img.size[0] * img.size[1]
            channels = len(img.getbands()) if label else (1 if 'grayscale' in reading.color_type else 3)
            megabytes = pixels * channels / 2**20
            if pixels > CV2_MAX_PIXELS:
                return _Read('too-large', f'{img.size[0]}x{img.size[1]} = {pixels / 1e6:.0f} Mpx: more than OpenCV '
                             f'decodes ({CV2_MAX_PIXELS / 1e6:.0f} Mpx)', out.stored)
            if megabytes > reading.max_image_mb:
                out.notes.append(('warning', 'too-large', f'{img.size[0]}x{img.size[1]} decodes to {megabytes:.0f} '
                                  f'MiB, over the assumed limit of {reading.max_image_mb:.0f} MiB per decoded image '
                                  '(each data-loader worker decodes it whole before resizing)'))
                out.decoded = out.stored
                return out
            img.load()
            out.orientation = _orientation(img)
    except OSError as e:
        if 'truncated' in str(e) or 'broken data stream' in str(e):
            return _Read('truncated', str(e))
        return _Read('unreadable', str(e) or type(e).__name__)
    except Exception as e:  # noqa: BLE001  any decoder error means the loader would fail on it
        return _Read('unreadable', f'{type(e).__name__}: {e}')
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = previous
    out.decoded = out.stored
    if label or out.orientation not in (None, 1):
        with open(path, 'rb') as f:
            content = f.read()
        flag = 'unchanged' if label else reading.color_type
        backend = reading.label_backend if label else reading.imdecode_backend
        try:
            array = mmcv.imfrombytes(content, flag=flag, backend=backend)
        except Exception as e:  # noqa: BLE001
            return _Read('unreadable', f'mmcv ({backend}, {flag}): {type(e).__name__}: {e}', out.stored)
        if array is None:
            return _Read('unreadable', f'mmcv ({backend}, {flag}) decodes nothing', out.stored)
        out.decoded = (array.shape[1], array.shape[0])
        if label:
            out.array = array
    return out


def _map(function, items: Sequence, jobs: int) -> List:
    if jobs <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(jobs) as pool:  # decoding releases the GIL
        return list(pool.map(function, items))


def _rotated(size: Tuple[int, int], orientation: Optional[int]) -> Tuple[int, int]:
    return (size[1], size[0]) if orientation in SWAPS_SIZE else size


def _orientation_problems(split: str, path: str, read: _Read, reading: PipelineReading,
                          target: Optional[Tuple[int, int]], target_name: str) -> List['Problem']:
    """Problems of an image's EXIF orientation and of its size against its annotation (``target``: (w, h))."""
    tag, stored, decoded = read.orientation, read.stored, read.decoded
    out = []
    if tag not in (None, 1):
        shown = _rotated(stored, tag)
        if reading.applies_orientation:
            if target is not None and target == decoded and decoded != stored:
                out.append(Problem(split, 'exif-orientation', path, f'EXIF orientation {tag}: the pipeline '
                                   f"(color_type={reading.color_type!r}) decodes it rotated to {decoded[0]}x"
                                   f'{decoded[1]}, the size {target_name} gives; the project\'s policy is '
                                   "color_type='color_ignore_orientation' (the stored frame)", 'warning'))
                return out
            if target is None or target == decoded:
                out.append(Problem(split, 'exif-orientation', path, f'EXIF orientation {tag}: the pipeline '
                                   f"(color_type={reading.color_type!r}) rotates/flips the image but not the targets "
                                   f'of {target_name}: misaligned. Use LoadImageFromFile(color_type='
                                   "'color_ignore_orientation')"))
                return out
        elif target is None or target == stored:
            out.append(Problem(split, 'exif-orientation', path, f'EXIF orientation {tag}: viewers show it rotated '
                               f'or mirrored ({shown[0]}x{shown[1]}); the pipeline decodes the '
                               f'stored frame {stored[0]}x{stored[1]}, the frame of {target_name}', 'warning'))
            return out
    if target is not None and decoded != target:
        why = ''
        if tag not in (None, 1):
            why = (f' (EXIF orientation {tag}: stored {stored[0]}x{stored[1]}, shown by viewers '
                   f'{_rotated(stored, tag)[0]}x{_rotated(stored, tag)[1]}, decoded by the pipeline '
                   f"(color_type={reading.color_type!r}) {decoded[0]}x{decoded[1]})")
        out.append(Problem(split, 'size-mismatch', path, f'image is {decoded[0]}x{decoded[1]} as the pipeline '
                           f'decodes it, {target_name} says {target[0]}x{target[1]} (w x h){why}'))
    return out


def _read_problems(split: str, path: str, read: _Read) -> List['Problem']:
    out = [Problem(split, kind, path, detail, severity) for severity, kind, detail in read.notes]
    if read.kind:
        out.append(Problem(split, read.kind, path, read.detail, read.severity))
    return out


def _resized(size: Tuple[int, int], resize: Optional[dict]) -> Tuple[int, int]:
    """(w, h) after the pipeline's first resize, at its smallest scale (mmcv's rescale rule for keep_ratio)."""
    if not resize:
        return size
    kind = resize['type'].split('.')[-1]
    if kind == 'RandomChoiceResize':
        scales = [tuple(s) for s in resize.get('scales', [])]
    else:
        scale = resize.get('scale')
        if scale is None:
            factor = resize.get('scale_factor') or 1.0
            factor = min(factor) if isinstance(factor, (list, tuple)) else factor
            return round(size[0] * factor), round(size[1] * factor)
        if isinstance(scale, (int, float)):
            scales = [(scale, scale)]
        else:
            scales = [tuple(s) for s in scale] if isinstance(scale[0], (list, tuple)) else [tuple(scale)]
        ratio = resize.get('ratio_range')
        if kind == 'RandomResize' and ratio:
            scales = [(s[0] * min(ratio), s[1] * min(ratio)) for s in scales]
    if not scales:
        return size
    if not resize.get('keep_ratio', False):  # mmcv's default: the exact scale
        return min((tuple(map(int, s)) for s in scales), key=lambda s: min(s))
    results = []
    for scale in scales:
        long_edge, short_edge = max(scale), min(scale)
        factor = min(long_edge / max(size), short_edge / min(size))
        results.append((round(size[0] * factor), round(size[1] * factor)))
    return min(results, key=lambda s: min(s))


def _stride_problems(split: str, path: str, read: _Read, reading: PipelineReading) -> List['Problem']:
    if read.decoded is None:
        return []
    w, h = _resized(read.decoded, reading.resize)
    if min(w, h) >= reading.stride:
        return []
    padded = reading.padded_to >= reading.stride
    return [Problem(split, 'too-small', path, f'{read.decoded[0]}x{read.decoded[1]} becomes {w}x{h} after the '
                    f'pipeline\'s resize, shorter than the model\'s stride {reading.stride}'
                    + (f' (padded to a multiple of {reading.padded_to}: the deepest features are mostly padding)'
                       if padded else ': the deepest feature map is empty; no padding is configured'),
                    'warning' if padded else 'error')]


# ---------------------------------------------------------------------------------------------------------------
# COCO: the json as mmdet's CocoDataset.parse_data_info / filter_data and LoadAnnotations read it
def _polygon_problems(segmentation, width: int, height: int, poly2mask: bool) -> Tuple[Optional[str], str]:
    """``(kind, detail)`` of a COCO ``segmentation`` that LoadAnnotations ignores, or that rasterises to nothing."""
    from pycocotools import mask as mask_utils
    if isinstance(segmentation, list):
        valid = [p for p in segmentation if len(p) % 2 == 0 and len(p) >= 6]
        if not valid:
            return 'invalid-polygon', ('no polygon with an even number (>= 6) of coordinates: the instance is '
                                       'ignored (box included)')
        dropped = len(segmentation) - len(valid)
        rles = mask_utils.frPyObjects([list(map(float, p)) for p in valid], height, width)
        if int(mask_utils.area(mask_utils.merge(rles))) == 0:
            return 'empty-mask', 'the polygons rasterise to an empty mask'
        if dropped:
            return 'invalid-polygon', f'{dropped} of {len(segmentation)} polygons ignored (odd coordinate count or ' \
                                      'fewer than 3 points)'
        return None, ''
    if not poly2mask:
        return 'invalid-polygon', 'an RLE mask with poly2mask=False: the instance is ignored (box included)'
    if isinstance(segmentation, dict):
        if segmentation.get('counts') is None or segmentation.get('size') is None or \
                not isinstance(segmentation['counts'], (list, str)):
            return 'invalid-polygon', 'an RLE without counts/size: the instance is ignored (box included)'
        rle = segmentation
        if isinstance(rle['counts'], list):
            rle = mask_utils.frPyObjects(rle, *rle['size'])
        if int(mask_utils.area(rle)) == 0:
            return 'empty-mask', 'the RLE mask is empty'
    return None, ''


def _check_coco(split: str, ann_file: str, img_dir: str, classes: Optional[Sequence[str]], filter_cfg: Optional[dict],
                reading: PipelineReading, jobs: int) -> Tuple[List['Problem'], str]:
    try:
        with open(ann_file) as f:
            coco = json.load(f)
        images, annotations = coco['images'], coco.get('annotations', [])
        categories = coco.get('categories', [])
    except FileNotFoundError:
        return [Problem(split, 'missing', ann_file, 'annotation file')], ''
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [Problem(split, 'unreadable', ann_file, f'annotation file: {type(e).__name__}: {e}')], ''
    known = {c['id'] for c in categories}
    used = {c['id'] for c in categories if classes is None or c.get('name') in classes}
    by_image: Dict[int, List[dict]] = {}
    for ann in annotations:
        by_image.setdefault(ann.get('image_id'), []).append(ann)
    min_size = (filter_cfg or {}).get('min_size', 0) or 0
    lost: Dict[str, int] = {}
    outside_classes = 0

    def check(info: dict) -> Tuple[List[Problem], Dict[str, int], int]:
        path = osp.join(img_dir, info['file_name'])
        width, height = info.get('width'), info.get('height')
        read = read_image(path, reading)
        out = _read_problems(split, path, read)
        if not read.kind:
            out += _orientation_problems(split, path, read, reading, (width, height), 'its COCO entry')
            out += _stride_problems(split, path, read, reading)
        anns = [a for a in by_image.get(info['id'], []) if not a.get('ignore', False)]
        counts: Dict[str, int] = {}
        other = 0
        if not anns:
            out.append(Problem(split, 'empty-annotation', path, f'image id {info["id"]} has no annotation',
                               'warning'))
        if min_size and min(width, height) < min_size:
            out.append(Problem(split, 'filtered', path, f'{width}x{height} is below filter_cfg.min_size={min_size}: '
                               f'dropped with its {len(anns)} annotation(s)', 'warning'))
            counts['in images filter_cfg drops'] = len(anns)
            return out, counts, 0
        unknown, empty, outside, masks = [], [], [], []
        for ann in anns:
            x, y, w, h = ann['bbox']
            if ann.get('category_id') not in known:
                unknown.append(ann)
                continue
            inter_w = max(0, min(x + w, width) - max(x, 0))
            inter_h = max(0, min(y + h, height) - max(y, 0))
            if inter_w * inter_h == 0 or ann.get('area', 1) <= 0 or w < 1 or h < 1:
                empty.append(ann)
                continue
            if ann['category_id'] not in used:
                other += 1
                continue
            if x < 0 or y < 0 or x + w > width or y + h > height:
                outside.append(ann)
            if reading.with_mask and ann.get('segmentation'):
                kind, detail = _polygon_problems(ann['segmentation'], width, height, reading.poly2mask)
                if kind:
                    masks.append((ann, kind, detail))
        if unknown:
            ids = sorted({a.get('category_id') for a in unknown}, key=str)
            out.append(Problem(split, 'unknown-category', path, f'{len(unknown)} annotation(s) (ids '
                               f'{_ids(unknown)}) with category_id {", ".join(map(str, ids))} not in the '
                               'categories of the annotation file: mmdet drops them silently'))
            counts['unknown category_id'] = len(unknown)
        if empty:
            out.append(Problem(split, 'empty-box', path, f'{len(empty)} box(es) (annotation ids {_ids(empty)}: '
                               f'{_boxes(empty)}) with w or h < 1, area <= 0 or outside the {width}x{height} image: '
                               'mmdet drops them', 'warning'))
            counts['empty box'] = len(empty)
        for ann in outside:
            out.append(Problem(split, 'box-outside', path, f'annotation {ann.get("id")} bbox [x,y,w,h]='
                               f'{ann["bbox"]} not inside the {width}x{height} image'))
        for ann, kind, detail in masks:
            out.append(Problem(split, kind, path, f'annotation {ann.get("id")}: {detail}', 'warning'))
            if 'instance is ignored' in detail:
                counts['instance ignored for its mask'] = counts.get('instance ignored for its mask', 0) + 1
        return out, counts, other

    problems = []
    for found, counts, other in _map(check, images, jobs):
        problems += found
        outside_classes += other
        for key, n in counts.items():
            lost[key] = lost.get(key, 0) + n
    total = sum(1 for a in annotations if not a.get('ignore', False))
    summary = _lost_summary(sum(lost.values()), total, lost, 'annotations')
    if outside_classes:
        summary += f'; {outside_classes} of categories outside the config\'s classes, left out as configured'
    return problems, summary


def _ids(anns: List[dict], limit: int = 5) -> str:
    ids = [str(a.get('id')) for a in anns]
    return ', '.join(ids[:limit]) + (', ...' if len(ids) > limit else '')


def _boxes(anns: List[dict], limit: int = 3) -> str:
    boxes = [str(a.get('bbox')) for a in anns]
    return ', '.join(boxes[:limit]) + (', ...' if len(boxes) > limit else '')


def _lost_summary(lost: int, total: int, reasons: Dict[str, int], what: str) -> str:
    if not lost:
        return f'none of its {total} {what} silently lost'
    why = ', '.join(f'{n} {reason}' for reason, n in sorted(reasons.items()) if n)
    return f'{lost} of its {total} {what} silently lost ({why})'


# ---------------------------------------------------------------------------------------------------------------
def _infos(dataset) -> List[dict]:
    # data_list is emptied once serialized (serialize_data=True, the default): read it back per index
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def _check_det_data_list(split: str, dataset, reading: PipelineReading, jobs: int) -> Tuple[List['Problem'], str]:
    def check(info: dict) -> List[Problem]:
        path = info['img_path']
        read = read_image(path, reading)
        out = _read_problems(split, path, read)
        target = (info['width'], info['height']) if 'width' in info and 'height' in info else None
        if not read.kind:
            out += _orientation_problems(split, path, read, reading, target, 'its annotation')
            out += _stride_problems(split, path, read, reading)
        instances = info.get('instances', [])
        if not instances:
            out.append(Problem(split, 'empty-annotation', path, 'no instances', 'warning'))
        if read.decoded is not None:
            width, height = read.decoded
            for inst in instances:
                x1, y1, x2, y2 = inst['bbox']
                if x2 <= x1 or y2 <= y1 or x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                    out.append(Problem(split, 'box-outside', path, f'bbox [x1,y1,x2,y2]={inst["bbox"]} not inside '
                                       f'the {width}x{height} image'))
        return out

    return [p for problems in _map(check, _infos(dataset), jobs) for p in problems], ''


def _check_seg(split: str, dataset, reading: PipelineReading, jobs: int) -> Tuple[List['Problem'], str]:
    ignore_index = getattr(dataset, 'ignore_index', 255)
    num_classes = len(dataset.metainfo.get('classes', ()) or ())

    def check(info: dict) -> List[Problem]:
        read = read_image(info['img_path'], reading)
        out = _read_problems(split, info['img_path'], read)
        if not read.kind:
            out += _stride_problems(split, info['img_path'], read, reading)
        seg = info.get('seg_map_path')
        if seg is None:
            return out
        label = read_image(seg, reading, label=True)
        out += _read_problems(split, seg, label)
        if label.kind or label.array is None:
            return out
        values = label.array.squeeze()  # as mmseg's LoadAnnotations
        if values.ndim != 2:
            out.append(Problem(split, 'label-channels', seg, f'label map of shape {label.array.shape}: mmseg needs '
                               'one channel of class indices (is it a colour rendering?)'))
            return out
        if not read.kind and read.orientation in (None, 1) and read.decoded != label.decoded:
            out.append(Problem(split, 'size-mismatch', seg, f'label map is {label.decoded[0]}x{label.decoded[1]}, '
                               f'image {info["img_path"]} is {read.decoded[0]}x{read.decoded[1]} (w x h)'))
        elif not read.kind:
            out += _orientation_problems(split, info['img_path'], read, reading, label.decoded,
                                         f'label map {seg}')
        if values.size and values.max() > 255:
            big = np.unique(values[values > 255])
            out.append(Problem(split, 'label-out-of-range', seg, f'values {_values(big)} above 255: mmseg casts '
                               'label maps to uint8, they wrap around to other classes'))
        values = values.astype(np.int64)
        if info.get('reduce_zero_label', False):
            values = np.where(values == 0, 255, values - 1)
        label_map = info.get('label_map')
        if label_map:
            mapped = values.copy()
            for old, new in label_map.items():
                mapped[values == old] = new
            values = mapped
        if num_classes:
            bad = (values >= num_classes) & (values != ignore_index) | (values < 0)
            if bad.any():
                found, counts = np.unique(values[bad], return_counts=True)
                shown = ', '.join(f'{v} ({c} px)' for v, c in list(zip(found.tolist(), counts.tolist()))[:6])
                out.append(Problem(split, 'label-out-of-range', seg, f'label values {shown} are neither a class index '
                                   f'(0..{num_classes - 1}) nor ignore_index={ignore_index}'
                                   + (' (after reduce_zero_label)' if info.get('reduce_zero_label') else '')))
        if values.size and (values == ignore_index).all():
            out.append(Problem(split, 'empty-annotation', seg, f'every pixel is ignore_index={ignore_index}',
                               'warning'))
        return out

    infos = _infos(dataset)
    problems = [p for found in _map(check, infos, jobs) for p in found]
    empty = sum(1 for p in problems if p.kind == 'empty-annotation')
    return problems, _lost_summary(empty, len(infos), {'label maps holding only ignore_index': empty} if empty else {},
                                   'label maps')


def _values(values: np.ndarray, limit: int = 6) -> str:
    items = [str(v) for v in values.tolist()]
    return ', '.join(items[:limit]) + (', ...' if len(items) > limit else '')


# ---------------------------------------------------------------------------------------------------------------
def _leaf_datasets(dataset_cfg) -> Iterable[dict]:
    """The datasets inside wrappers (RepeatDataset, ClassBalancedDataset, ConcatDataset, MultiImageMixDataset)."""
    if isinstance(dataset_cfg, (list, tuple)):
        for item in dataset_cfg:
            yield from _leaf_datasets(item)
    elif isinstance(dataset_cfg, dict):
        if 'datasets' in dataset_cfg:
            yield from _leaf_datasets(dataset_cfg['datasets'])
        elif 'dataset' in dataset_cfg:
            yield from _leaf_datasets(dataset_cfg['dataset'])
        else:
            yield dataset_cfg


def _build(dataset_cfg: dict, lazy: bool):
    from mmengine.registry import DATASETS
    # a deep copy: datasets join data_root into the data_prefix dict they are given, in place
    return DATASETS.build(dict(copy.deepcopy(dataset_cfg), pipeline=[], lazy_init=lazy))  # no transforms


_RESIZES = ('Resize', 'RandomResize', 'RandomChoiceResize')


def pipeline_reading(pipeline: Sequence[dict], model_cfg: Optional[dict] = None, stride: int = DEFAULT_STRIDE,
                     max_image_mb: float = DEFAULT_MAX_IMAGE_MB) -> PipelineReading:
    """What the check must know of a dataset's pipeline (and of the model's data preprocessor)."""
    reading = PipelineReading(stride=stride, max_image_mb=max_image_mb)
    for transform in pipeline or []:
        if not isinstance(transform, dict) or not isinstance(transform.get('type'), str):
            continue
        kind = transform['type'].split('.')[-1]
        if kind == 'LoadImageFromFile':
            reading.color_type = transform.get('color_type', 'color')
            reading.imdecode_backend = transform.get('imdecode_backend', 'cv2')
        elif kind == 'LoadAnnotations':
            reading.with_mask = bool(transform.get('with_mask', False))
            reading.poly2mask = bool(transform.get('poly2mask', True))
            reading.label_backend = transform.get('imdecode_backend', 'pillow')
        elif kind in _RESIZES and reading.resize is None:
            reading.resize = dict(transform)
    preprocessor = (model_cfg or {}).get('data_preprocessor') or {}
    size = preprocessor.get('size')
    reading.padded_to = max(int(preprocessor.get('size_divisor') or 0), int(preprocessor.get('pad_size_divisor') or 0),
                            min(size) if size else 0)
    return reading


def check_dataset_cfg(split: str, dataset_cfg: dict, jobs: int = 1, seen: Optional[set] = None,
                      reading: Optional[PipelineReading] = None) -> Tuple[List[Problem], str]:
    """Check one (unwrapped) dataset config; returns the problems and a one-line summary of what was read.

    ``seen`` holds the (ann_file, data_prefix) already checked, so a set shared by splits is read once.
    ``reading`` says how the pipeline reads it (:func:`pipeline_reading`; by default from ``dataset_cfg``).
    """
    reading = reading or pipeline_reading(dataset_cfg.get('pipeline', []))
    dataset = _build(dataset_cfg, lazy=True)  # resolves data_root into ann_file / data_prefix, parses nothing
    name = type(dataset).__name__
    ann_file = getattr(dataset, 'ann_file', '') or ''
    prefix = dict(getattr(dataset, 'data_prefix', {}) or {})
    key = (ann_file, repr(sorted(prefix.items())))
    where = ann_file or ', '.join(f'{k}={v}' for k, v in prefix.items())
    if seen is not None:
        if key in seen:
            return [], f'[{split}] {name}: {where}: checked above'
        seen.add(key)
    try:
        from mmdet.datasets import CocoDataset
    except ImportError:  # mmseg-only installs
        CocoDataset = ()
    if isinstance(dataset, CocoDataset):
        classes = dataset.metainfo.get('classes')
        found, lost = _check_coco(split, ann_file, prefix.get('img', ''), classes, dataset.filter_cfg, reading, jobs)
        return found, f'[{split}] {name}: {where}' + (f'; {lost}' if lost else '')
    try:
        dataset = _build(dataset_cfg, lazy=False)
    except FileNotFoundError as e:
        return [Problem(split, 'missing', str(e.filename or e), 'while listing the dataset')], f'[{split}] {name}'
    except Exception as e:  # noqa: BLE001
        return [Problem(split, 'unreadable', where, f'{type(e).__name__}: {e}')], f'[{split}] {name}'
    summary = f'[{split}] {name}: {where} ({len(dataset)} samples)'
    if 'seg_map_path' in prefix or (len(dataset) and 'seg_map_path' in dataset.get_data_info(0)):
        found, lost = _check_seg(split, dataset, reading, jobs)
    else:
        found, lost = _check_det_data_list(split, dataset, reading, jobs)
    return found, summary + (f'; {lost}' if lost else '')


def check_config(cfg, splits: Sequence[str] = SPLITS, jobs: int = 1, log=print, stride: int = DEFAULT_STRIDE,
                 max_image_mb: float = DEFAULT_MAX_IMAGE_MB) -> List[Problem]:
    """Check the datasets of ``cfg``'s ``<split>_dataloader`` for each split; each distinct dataset once.

    Args:
        stride (int): The model's deepest stride: images shorter than it after the resize are too small.
        max_image_mb (float): Decoded size (uint8, MiB) above which an image is too large for the data loader.
    """
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    problems, seen = [], set()
    for split in splits:
        loader = cfg.get(f'{split}_dataloader', None)
        if not loader:
            continue
        for dataset_cfg in _leaf_datasets(loader.get('dataset', None)):
            reading = pipeline_reading(dataset_cfg.get('pipeline', []), cfg.get('model', None), stride, max_image_mb)
            found, summary = check_dataset_cfg(split, dataset_cfg, jobs, seen, reading)
            errors = sum(p.severity == 'error' for p in found)
            warnings = len(found) - errors
            state = f'{errors} error(s), {warnings} warning(s)' if found else 'clean'
            log(summary if summary.endswith('checked above') else f'{summary}: {state}')
            problems += found
    return problems


def format_report(problems: List[Problem]) -> str:
    errors = [p for p in problems if p.severity == 'error']
    if not problems:
        return ('check_dataset: clean (every file present, readable and complete as the pipeline decodes it; every '
                'annotation used)')

    def counts(items):
        kinds: Dict[str, int] = {}
        for p in items:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        return ', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))

    warnings = [p for p in problems if p.severity != 'error']
    line = f'check_dataset: {len(errors)} error(s)' + (f' ({counts(errors)})' if errors else '')
    line += f', {len(warnings)} warning(s)' + (f' ({counts(warnings)})' if warnings else '')
    return '\n'.join(map(str, problems)) + '\n' + line
