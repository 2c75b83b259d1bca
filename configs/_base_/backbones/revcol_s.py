# RevCol-S: RevCol-T's fragment (revcol_t.py) with 8 columns, its ImageNet-1k checkpoint and the official detection
# drop path (0.4; the official UPerNet keeps 0.3).
_base_ = './revcol_t.py'
backbone = dict(arch='small', drop_path_rate=0.4, init_cfg=dict(checkpoint='checkpoints/revcol_small_1k.pth'))
backbone_channels = [64, 128, 256, 512]
