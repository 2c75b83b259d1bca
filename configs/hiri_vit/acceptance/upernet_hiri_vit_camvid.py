# Acceptance run on real images: a reduced-width HIRI-ViT UPerNet (from scratch) on CamVid, CPU. Everything but the
# backbone and the input size comes from the RevCol acceptance run (configs/acceptance/upernet_revcol_camvid.py:
# data, classes, decoder, schedule). As in the paper, the input is doubled (full 480x360 images, 320 crops, vs 240x180
# and 160 crops there) and the decoder reads stages 2-5 (strides 8-64): it sees the map sizes of the RevCol run.
#   python tools/train.py configs/hiri_vit/acceptance/upernet_hiri_vit_camvid.py
_base_ = '../../acceptance/upernet_revcol_camvid.py'

arch = dict(channels=[16, 32, 64, 96, 128], depths=[2, 2, 2, 2, 1], expansions=[8, 8, 4, 4, 4],
            num_heads=[0, 0, 0, 3, 4], sr_ratios=[1, 1, 1, 1, 1], stem_channels=16)
channels = arch['channels'][1:]
scale = (480, 360)
crop_size = (320, 320)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='HIRIViT',
        arch=arch,
        out_indices=(1, 2, 3, 4),
        drop_path_rate=0.0,
        init_cfg=None),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2], in_index=2))

# the base's pipelines (orientation policy included) at this input size
pipeline_changes = dict(RandomResize=dict(scale=scale), Resize=dict(scale=scale), RandomCrop=dict(crop_size=crop_size))
train_pipeline = [dict(t, **pipeline_changes.get(t['type'], {})) for t in _base_.train_pipeline]
test_pipeline = [dict(t, **pipeline_changes.get(t['type'], {})) for t in _base_.test_pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
