# Acceptance run of the zoo on real images: UPerNet with a reduced Attention-56 (one Attention Module per stage as
# Attention-56, stage widths 32/64/128/256 as the RevCol of the base, from scratch) on CamVid, with every setting of
# configs/acceptance/upernet_revcol_camvid.py (the base). Compare the curves with tools/analysis/plot_curves.py.
#   python tools/train.py configs/classic/acceptance/upernet_resattnet56_reduced_camvid.py
_base_ = ['../../acceptance/upernet_revcol_camvid.py', '../../_base_/backbones/res_attention_56.py']

model = dict(
    backbone=dict(
        _base_.backbone,
        _delete_=True,
        arch=dict(num_modules=(1, 1, 1), stem_channels=16, channels=_base_.channels),
        init_cfg=None))
