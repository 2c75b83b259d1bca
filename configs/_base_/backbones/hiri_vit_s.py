# HIRI-ViT-S as the backbone of the dense-prediction configs in configs/hiri_vit/ (docs/hiri_vit.md).
# The paper's detectors/segmentors take twice the usual input and read stages 2-5 (strides 8-64): the maps the
# neck sees then have the sizes that strides 4-32 give at the usual input, so the heads cost what they usually do.
# BN statistics are frozen (norm_eval): fine-tuning runs 2 images per GPU, too few for batch statistics.
backbone = dict(
    type='HIRIViT',
    arch='s',
    out_indices=(1, 2, 3, 4),
    drop_path_rate=0.2,
    norm_eval=True,
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/hiri_vit_s_in1k_448.pth'))
backbone_channels = [64, 128, 320, 448]  # channels of stages 2-5 (HIRIViT.arch_settings['small'])
