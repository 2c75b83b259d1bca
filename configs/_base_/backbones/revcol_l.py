# RevCol-L: RevCol-T's fragment (revcol_t.py) with 8 columns of 128-1024 channels, its ImageNet-22k checkpoint and the
# official detection drop path (0.5; UPerNet and Mask2Former keep 0.3).
_base_ = './revcol_t.py'
backbone = dict(arch='large', drop_path_rate=0.5, init_cfg=dict(checkpoint='checkpoints/revcol_large_22k.pth'))
backbone_channels = [128, 256, 512, 1024]
