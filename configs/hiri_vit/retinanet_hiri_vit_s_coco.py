# RetinaNet 1x with HIRI-ViT-S (paper Sec. 5.2): shorter side 1600 (longer <= 2666), AdamW, batch 16 (8 GPUs x 2),
# 12 epochs. The FPN starts at stage 3 (stride 16 at 1600 = stride 8 at 800), with two extra levels, as RetinaNet's
# P3-P7 at the usual scale.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../_base_/backbones/hiri_vit_s.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

model = dict(
    backbone={{_base_.hiri_vit_s}},
    neck=dict(in_channels={{_base_.hiri_vit_s_channels}}, start_level=1, add_extra_convs='on_input', num_outs=5))

scale = (2666, 1600)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW (lr 1e-4, wd 0.05: the Swin/PVT detection setting the paper follows), no decay on norms and biases
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
auto_scale_lr = dict(enable=False, base_batch_size=16)
