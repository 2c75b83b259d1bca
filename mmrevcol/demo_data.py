"""The embedded demo dataset: textured shapes with instance masks (COCO json) and semantic label maps (mmseg).

Deterministic (seeded numpy + OpenCV drawing): the same arguments give byte-identical files. Layout::

    data/revcol_demo/
      img_dir/{train,val}/00000.png              RGB images (size x size)
      ann_dir/{train,val}/00000.png              label maps: 0 background, 1 circle, 2 square, 3 triangle
      annotations/instances_{train,val}.json     COCO instances (polygons), category ids 1..3
      meta.json                                  generation arguments (regenerated when they change)

Each image has a noisy background (random colour, Gaussian noise, a few random lines) and 1-4 shapes with a
random colour and texture; a later shape may occlude an earlier one (masks, boxes and label maps are the visible
parts). Usage::

    python -m mmrevcol.demo_data --out data/revcol_demo
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', ) + CLASSES
PALETTE = [(0, 0, 0), (220, 20, 60), (0, 128, 255), (60, 200, 60)]
DEFAULT_ROOT = 'data/revcol_demo'
VERSION = 1


def _background(rng: np.random.RandomState, size: int) -> np.ndarray:
    base = rng.randint(0, 256, size=3)
    img = np.empty((size, size, 3), np.float32)
    img[:] = base
    # smooth colour gradient + pixel noise
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    grad = rng.uniform(-60, 60, size=(2, 3))
    img += xx[..., None] * grad[0] + yy[..., None] * grad[1]
    img += rng.normal(0, 12, size=img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.randint(0, 4)):
        p1 = tuple(int(v) for v in rng.randint(0, size, 2))
        p2 = tuple(int(v) for v in rng.randint(0, size, 2))
        colour = tuple(int(v) for v in rng.randint(0, 256, 3))
        cv2.line(img, p1, p2, colour, int(rng.randint(1, 3)))
    return img


def _shape_mask(rng: np.random.RandomState, size: int, cls: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    r = int(rng.randint(size // 10, size // 4))  # "radius" of the shape
    cx, cy = (int(v) for v in rng.randint(r, size - r, 2))
    if cls == 0:  # circle
        cv2.circle(mask, (cx, cy), r, 1, -1)
    elif cls == 1:  # square, slightly rotated
        angle = rng.uniform(-20, 20)
        box = cv2.boxPoints(((cx, cy), (2 * r * 0.9, 2 * r * 0.9), angle))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    else:  # triangle, random rotation
        angle = rng.uniform(0, 2 * np.pi)
        pts = [(cx + r * np.cos(angle + k * 2 * np.pi / 3), cy + r * np.sin(angle + k * 2 * np.pi / 3))
               for k in range(3)]
        cv2.fillPoly(mask, [np.round(np.array(pts)).astype(np.int32)], 1)
    return mask


def _texture(rng: np.random.RandomState, size: int) -> np.ndarray:
    colour = rng.randint(0, 256, size=3).astype(np.float32)
    tex = np.empty((size, size, 3), np.float32)
    tex[:] = colour
    kind = rng.randint(3)
    if kind == 1:  # stripes
        period = rng.randint(4, 10)
        stripes = ((np.arange(size) // period) % 2).astype(np.float32)
        tex += (stripes[None, :, None] if rng.rand() < 0.5 else stripes[:, None, None]) * rng.uniform(-70, 70)
    elif kind == 2:  # speckles
        tex += rng.normal(0, 25, size=tex.shape)
    tex += rng.normal(0, 6, size=tex.shape)
    return tex


def make_sample(rng: np.random.RandomState, size: int):
    """One image, its instances ``[(class index 0..2, visible mask)]`` and its label map."""
    img = _background(rng, size).astype(np.float32)
    instances = []
    for _ in range(rng.randint(1, 5)):
        cls = int(rng.randint(len(CLASSES)))
        mask = _shape_mask(rng, size, cls)
        tex = _texture(rng, size)
        img[mask > 0] = tex[mask > 0]
        for other in instances:  # occlusion: earlier shapes lose the covered pixels
            other[1][mask > 0] = 0
        instances.append([cls, mask])
    img = np.clip(img, 0, 255).astype(np.uint8)
    # keep instances with a reasonable visible part
    instances = [(c, m) for c, m in instances if int(m.sum()) >= 30]
    label = np.zeros((size, size), np.uint8)
    for cls, mask in instances:
        label[mask > 0] = cls + 1
    return img, instances, label


def _polygons(mask: np.ndarray) -> List[List[float]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        if len(c) >= 3 and cv2.contourArea(c) >= 4:
            polys.append([float(v) for v in c.reshape(-1)])
    return polys


def _write_split(root: str, split: str, num: int, size: int, rng: np.random.RandomState) -> Dict:
    img_dir = osp.join(root, 'img_dir', split)
    ann_dir = osp.join(root, 'ann_dir', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    images, annotations = [], []
    for i in range(num):
        img, instances, label = make_sample(rng, size)
        name = f'{i:05d}.png'
        cv2.imwrite(osp.join(img_dir, name), img)
        cv2.imwrite(osp.join(ann_dir, name), label)
        image_id = i + 1
        images.append(dict(id=image_id, file_name=name, width=size, height=size))
        for cls, mask in instances:
            polys = _polygons(mask)
            if not polys:
                continue
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            annotations.append(
                dict(id=len(annotations) + 1, image_id=image_id, category_id=cls + 1, segmentation=polys,
                     area=float(mask.sum()), bbox=[x0, y0, x1 - x0, y1 - y0], iscrowd=0))
    coco = dict(
        info=dict(description='mmrevcol synthetic shapes demo', version=str(VERSION)),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=k + 1, name=n, supercategory='shape') for k, n in enumerate(CLASSES)])
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)
    return dict(images=len(images), instances=len(annotations))


def generate(root: str = DEFAULT_ROOT, num_train: int = 64, num_val: int = 16, size: int = 128, seed: int = 0,
             overwrite: bool = False, verbose: bool = True) -> str:
    """Write the dataset under ``root`` (skipped if already there with the same arguments). Returns ``root``."""
    meta = dict(version=VERSION, num_train=num_train, num_val=num_val, size=size, seed=seed)
    meta_file = osp.join(root, 'meta.json')
    if not overwrite and osp.isfile(meta_file):
        with open(meta_file) as f:
            old = json.load(f)
        if {k: old.get(k) for k in meta} == meta:
            if verbose:
                print(f'demo data already in {root}', flush=True)
            return root
    rng = np.random.RandomState(seed)
    stats = {split: _write_split(root, split, num, size, rng)
             for split, num in (('train', num_train), ('val', num_val))}
    with open(meta_file, 'w') as f:
        json.dump(dict(meta, stats=stats), f, indent=1)
    if verbose:
        print(f'demo data written to {root}: {stats}', flush=True)
    return root


def main(argv: Optional[list] = None) -> None:
    p = argparse.ArgumentParser(description='Generate the mmrevcol synthetic shapes demo dataset')
    p.add_argument('--out', default=DEFAULT_ROOT)
    p.add_argument('--num-train', type=int, default=64)
    p.add_argument('--num-val', type=int, default=16)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--overwrite', action='store_true')
    a = p.parse_args(argv)
    generate(a.out, a.num_train, a.num_val, a.size, a.seed, a.overwrite)


if __name__ == '__main__':
    main()
