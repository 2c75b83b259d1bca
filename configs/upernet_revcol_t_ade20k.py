# RevCol-T UPerNet 160k on ADE20K, 512x512 crops: the official RevCol recipe (Segmentation/ of
# megvii-research/RevCol) on mmseg 1.x (_base_/recipes/upernet_ade20k_160k_revcol.py: mmseg's ConvNeXt UPerNet data,
# heads, slide test and 160k schedule; AdamW lr 6e-5 wd 0.01, layer decay 1.0, AMP) with the RevCol-T fragment.
# Official: 47.4 mIoU ss / 47.6 ms.
_base_ = ['./_base_/recipes/upernet_ade20k_160k_revcol.py', './_base_/backbones/revcol_t.py']
model = dict(
    backbone=dict(_base_.backbone, _delete_=True, kernel_size=3,
                  reversible=False),  # --cfg-options model.backbone.reversible=True: reversible (memory-saving) training
    decode_head=dict(in_channels=_base_.backbone_channels),
    auxiliary_head=dict(in_channels=_base_.backbone_channels[2]))
