# UPerNet 160k on ADE20K with HIRI-ViT-S (paper Sec. 5.3): Swin's UPerNet recipe (AdamW lr 6e-5, wd 0.01, batch 16 =
# 8 GPUs x 2, linear warm-up 1500 iters then linear decay, flip + photometric distortion + rescale in [0.5, 2.0]),
# at twice Swin's input (1024x1024 crops of images rescaled to 4096x1024) as the detectors double theirs: the decoder
# sees stages 2-5 (strides 8-64), i.e. the map sizes of a stride 4-32 backbone on 512 crops.
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
          '../_base_/backbones/hiri_vit_s.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

crop_size = (1024, 1024)
scale = (4096, 1024)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone={{_base_.hiri_vit_s}},
    decode_head=dict(in_channels={{_base_.hiri_vit_s_channels}}, num_classes=150),
    auxiliary_head=dict(in_channels=320, in_index=2, num_classes=150))  # stage 4

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
