# SLaK-S backbone: SLaK-T's fragment (slak_t.py: the official detection/segmentation build) with the small arch.
_base_ = './slak_t.py'
slak_channels = [124, 249, 499, 998]  # int(d * 1.3) of the small dims
slak_backbone = dict(
    arch='small', init_cfg=dict(type='Pretrained', checkpoint='checkpoints/SLaK_small_checkpoint.pth'))
