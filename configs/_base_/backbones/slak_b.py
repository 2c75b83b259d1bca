# SLaK-B backbone: SLaK-T's fragment (slak_t.py: the official detection/segmentation build) with the base arch.
_base_ = './slak_t.py'
backbone = dict(arch='base', init_cfg=dict(checkpoint='checkpoints/SLaK_base_checkpoint.pth'))
backbone_channels = [166, 332, 665, 1331]  # int(d * 1.3) of the base dims
