# Cascade Mask R-CNN 3x on COCO, the official RevCol recipe (Detection/ of megvii-research/RevCol) on mmdet 3.x:
# cascade_mask_rcnn_coco_3x.py (mmdet's ConvNeXt 3x: data, schedule, AdamW lr 2e-4 wd 0.05, AMP) with RevCol's
# Shared4Conv1FC GIoU heads (SyncBN, decoded boxes) and RevCol's layer-wise lr decay 0.85 (official depth ids; no
# weight decay on 1-D params, biases and alphas).
_base_ = './cascade_mask_rcnn_coco_3x.py'


def _bbox_head(stds):
    return dict(
        type='Shared4Conv1FCBBoxHead',
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


model = dict(
    neck=dict(out_channels=256, num_outs=5),
    roi_head=dict(bbox_head=[
        _bbox_head([0.1, 0.1, 0.2, 0.2]),
        _bbox_head([0.05, 0.05, 0.1, 0.1]),
        _bbox_head([0.033, 0.033, 0.067, 0.067]),
    ]))
optim_wrapper = dict(
    constructor='RevColLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(_delete_=True, decay_rate=0.85, decay_type='layer_wise'))
