# RevCol-B: RevCol-T's fragment (revcol_t.py) with 16 columns of 72-576 channels, its ImageNet-1k checkpoint
# (revcol_base_22k.pth is the ImageNet-22k one) and the official detection drop path (0.4; UPerNet keeps 0.3).
_base_ = './revcol_t.py'
backbone = dict(arch='base', drop_path_rate=0.4, init_cfg=dict(checkpoint='checkpoints/revcol_base_1k.pth'))
backbone_channels = [72, 144, 288, 576]
