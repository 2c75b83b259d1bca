# RevCol-T Cascade Mask R-CNN 3x on COCO: the official RevCol recipe (Detection/ of megvii-research/RevCol) on
# mmdet 3.x. Everything not set here (data pipeline, 3x schedule, FPN/RPN/RoI heads) comes from mmdet's ConvNeXt
# 3x config: DETR-style multi-scale + crop augmentation, AMP, 36 epochs with steps at 27/33, 2 images x 8 GPUs.
# Official result: 50.8 AP box / 44.0 AP mask (ImageNet-1k pretrained RevCol-T).
_base_ = 'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'

custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

# Official ImageNet-1k checkpoint (see docs/downstream.md); relative paths resolve from the repository root.
pretrained = 'checkpoints/revcol_tiny_1k.pth'
channels = [64, 128, 256, 512]


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
    backbone=dict(
        _delete_=True,
        type='RevCol',
        arch='tiny',
        kernel_size=3,
        drop_path_rate=0.3,
        reversible=False,  # --cfg-options model.backbone.reversible=True: reversible (memory-saving) training
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=channels, out_channels=256, num_outs=5),
    roi_head=dict(bbox_head=[
        _bbox_head([0.1, 0.1, 0.2, 0.2]),
        _bbox_head([0.05, 0.05, 0.1, 0.1]),
        _bbox_head([0.033, 0.033, 0.067, 0.067]),
    ]))
del _bbox_head

# AdamW + RevCol layer-wise lr decay (official depth ids; no weight decay on 1-D params, biases and alphas).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='RevColLayerDecayOptimizerConstructor',
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(_delete_=True, decay_rate=0.85, decay_type='layer_wise'))

# 16 images per batch in total: 2 per GPU x 8 GPUs (the base's batch_size=2).
auto_scale_lr = dict(enable=False, base_batch_size=16)
