# SLaK-T Mask2Former 160k on ADE20K, 512x512 (not an official SLaK recipe: mmseg's Mask2Former Swin-T setting,
# AdamW lr 1e-4, backbone lr x0.1, no weight decay on norms/embeddings).
_base_ = ['mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py', '../_base_/backbones/slak_t.py']

custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.slak_backbone, drop_path_rate=0.3),
    decode_head=dict(in_channels=_base_.slak_channels))

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

custom_hooks = [_base_.slak_fixed_mask_hook]
