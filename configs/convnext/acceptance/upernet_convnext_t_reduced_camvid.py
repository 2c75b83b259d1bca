# Acceptance run of the zoo on real images: UPerNet with a reduced ConvNeXt-T (from scratch) on CamVid, with every
# setting of configs/acceptance/upernet_revcol_camvid.py (the base: data, 1200 iters of batch 4 at 160x160, AdamW
# 2e-3, poly, heads) and the widths / block count of its RevCol (channels 32/64/128/256, 2+2+4+2 blocks = 2 columns
# of 1/1/2/1). Plot the val mIoU curves side by side with tools/analysis/plot_curves.py (docs/zoo.md).
#   python tools/train.py configs/convnext/acceptance/upernet_convnext_t_reduced_camvid.py
_base_ = ['../../acceptance/upernet_revcol_camvid.py', '../../_base_/backbones/convnext_t.py']

model = dict(
    backbone=dict(
        _base_.backbone,
        _delete_=True,
        arch=dict(depths=[2, 2, 4, 2], channels=_base_.channels),
        drop_path_rate=0.0,
        layer_scale_init_value=1e-6,  # ConvNeXt's from-scratch value (RevCol's blocks use it too)
        init_cfg=None))
