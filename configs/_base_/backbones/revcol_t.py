# RevCol-T (megvii-research/RevCol): 4 columns, channels 64/128/256/512, blocks 2/2/4/2, 3x3 depthwise kernels,
# outputs of the last column at strides 4/8/16/32; the official ImageNet-1k checkpoint (docs/downstream.md; relative
# paths resolve from the repository root). Drop path 0.3: the official detection/segmentation value for T.
# A config takes it as  model = dict(backbone=dict(_base_.backbone, _delete_=True, <overrides>)).
backbone = dict(
    type='RevCol',
    arch='tiny',
    drop_path_rate=0.3,
    out_indices=(0, 1, 2, 3),
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/revcol_tiny_1k.pth'))
backbone_channels = [64, 128, 256, 512]
