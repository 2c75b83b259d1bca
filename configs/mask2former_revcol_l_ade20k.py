# RevCol-L (ImageNet-22k) Mask2Former 160k on ADE20K, 640x640 (not an official RevCol recipe: mmseg's Mask2Former
# Swin-L 640 setting, whose pipeline and schedule are inherited).
_base_ = 'mmseg::mask2former/mask2former_swin-b-in1k-384x384-pre_8xb2-160k_ade20k-640x640.py'

custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

pretrained = 'checkpoints/revcol_large_22k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RevCol',
        arch='large',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]))

embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,
        }))
