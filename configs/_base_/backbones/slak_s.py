# SLaK-S backbone: SLaK-T's fragment (slak_t.py: the official detection/segmentation build) with the small arch.
_base_ = './slak_t.py'
backbone = dict(arch='small', init_cfg=dict(checkpoint='checkpoints/SLaK_small_checkpoint.pth'))
backbone_channels = [124, 249, 499, 998]  # int(d * 1.3) of the small dims
