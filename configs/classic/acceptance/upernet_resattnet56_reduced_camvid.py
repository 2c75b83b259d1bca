# Acceptance run of the zoo on real images: UPerNet with a reduced Attention-56 (one Attention Module per stage as
# Attention-56, from scratch) on CamVid, with every setting of configs/acceptance/upernet_revcol_camvid.py (the
# base). Stage widths 64/128/256/512 (bottlenecks 16-128) give a backbone of 1.9M parameters, the size of the base's
# RevCol (2.1M) and of the reduced ConvNeXt-T (1.9M); the heads take these widths, all else is the base's.
# Compare the curves with tools/analysis/plot_curves.py (docs/zoo.md).
#   python tools/train.py configs/classic/acceptance/upernet_resattnet56_reduced_camvid.py
_base_ = ['../../acceptance/upernet_revcol_camvid.py', '../../_base_/backbones/res_attention_56.py']

channels = [64, 128, 256, 512]
model = dict(
    backbone=dict(
        _base_.backbone,
        _delete_=True,
        arch=dict(num_modules=(1, 1, 1), stem_channels=32, channels=channels),
        init_cfg=None),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
