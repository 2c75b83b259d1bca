# RevCol-T Mask2Former (instance segmentation) 50e on COCO, LSJ 1024 (not an official RevCol recipe: mmdet's
# Mask2Former Swin-T instance setting).
_base_ = 'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py'

custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

pretrained = 'checkpoints/revcol_tiny_1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RevCol',
        arch='tiny',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    panoptic_head=dict(in_channels=[64, 128, 256, 512]))

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
