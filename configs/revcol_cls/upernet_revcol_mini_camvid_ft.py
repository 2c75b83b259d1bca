# Step 3 of the pre-train -> fine-tune flow (tools/pretrain_finetune.sh, docs/pretraining.md): UPerNet on CamVid
# (the acceptance recipe, configs/acceptance/upernet_revcol_camvid.py) with the RevCol pre-trained by
# revcol_mini_coco_crops.py, its 3x3 kernels padded to 7x7 by tools/convert_checkpoint.py (step 2), and layer-wise
# LR decay. The same run from scratch, for comparison: --cfg-options model.backbone.init_cfg=None
_base_ = '../acceptance/upernet_revcol_camvid.py'

pretrained = 'work_dirs/pretrain_flow/revcol_mini_k7.pth'
arch = dict(channels=[32, 64, 128, 256], layers=[1, 1, 2, 1], num_columns=4)  # as revcol_mini_coco_crops.py
model = dict(
    backbone=dict(arch=arch, kernel_size=7, drop_path_rate=0.1,
                  init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=arch['channels']),
    auxiliary_head=dict(in_channels=arch['channels'][2]))
optim_wrapper = dict(
    constructor='RevColLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='layer_wise'))
