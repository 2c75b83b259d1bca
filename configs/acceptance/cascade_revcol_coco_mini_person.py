# Acceptance run on real images: the small demo RevCol Cascade Mask R-CNN (2 columns, from scratch) on the 80-image
# COCO subset of ../shared/data/coco_mini, person only, images resized to a 320 long side, CPU. There is no val
# split in coco_mini: AP is measured on the same 80 images (it shows learning, not generalisation).
#   python tools/train.py configs/acceptance/cascade_revcol_coco_mini_person.py
# Other data location: --cfg-options train_dataloader.dataset.data_root=DIR/ val_dataloader.dataset.data_root=DIR/
#   test_dataloader.dataset.data_root=DIR/ val_evaluator.ann_file=DIR/annotations/instances_train2017.json
#   test_evaluator.ann_file=DIR/annotations/instances_train2017.json
_base_ = '../demo/cascade_revcol_demo.py'

data_root = '../shared/data/coco_mini/'
classes = ('person', )
max_iters = 400
image_size = (320, 320)

anchor_generator = dict(_base_.anchor_generator, scales=[8])

model = dict(
    rpn_head=dict(anchor_generator=anchor_generator),
    roi_head=dict(
        # the demo's three heads with one class (a list in a config is replaced, not merged)
        bbox_head=[dict(head, num_classes=len(classes)) for head in _base_.model.roi_head.bbox_head],
        mask_head=dict(num_classes=len(classes))))

# the demo's pipelines (orientation policy, anchor filter) with these images and anchors
pipeline_changes = dict(Resize=dict(scale=image_size), SkipImagesWithoutAnchors=dict(anchor_generator=anchor_generator))
train_pipeline = [dict(t, **pipeline_changes.get(t['type'], {})) for t in _base_.train_pipeline]
test_pipeline = [dict(t, **pipeline_changes.get(t['type'], {})) for t in _base_.test_pipeline]
data = dict(
    data_root=data_root,
    metainfo=dict(classes=classes),
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'))
train_dataloader = dict(batch_size=2, dataset=dict(**data, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(**data, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_train2017.json')
test_evaluator = val_evaluator

train_cfg = dict(max_iters=max_iters, val_interval=100)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=1e-5, by_epoch=False, begin=0, end=max_iters),
]
default_hooks = dict(checkpoint=dict(interval=100, max_keep_ckpts=1))
