# RevCol-ViT-S UPerNet on ADE20K, 512x512: dense prediction from an isotropic RevCol. The four levels of the last
# column (all at stride 16) become a simple feature pyramid (strides 4, 8, 16, 32: 2x deconvs, identity, max-pool;
# mmseg's Feature2Pyramid, as its ViT/BEiT/MAE UPerNets and mmdet's ViTDet do). Data, UPerNet, 160k schedule and AMP
# from mmseg's MAE UPerNet config. No official RevCol-ViT weights exist: pre-train with revcol_vit_s_in1k.py and set
# model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH) (position embeddings are resized on load).
_base_ = ['mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py', '../_base_/runtime/safety.py',
          '../_base_/backbones/revcol_vit_s.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks

dims = _base_.backbone_channels[0]
model = dict(
    pretrained=None,
    backbone=dict(_base_.backbone, _delete_=True, img_size=(512, 512)),
    neck=dict(embed_dim=dims, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=_base_.backbone_channels, channels=512, num_classes=150),
    auxiliary_head=dict(in_channels=dims, num_classes=150))

# mmseg's LayerDecayOptimizerConstructor reads ViT/BEiT parameter names: plain AdamW here.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.alpha': dict(decay_mult=0.0), '.pos_embed': dict(decay_mult=0.0),
                                    '.logit_scale': dict(decay_mult=0.0)}),
    loss_scale='dynamic')


def _oriented(pipeline):  # the image-orientation policy (docs/contributing.md) on a pipeline of the toolbox
    return [dict(t, color_type='color_ignore_orientation') if t.type == 'LoadImageFromFile' else t for t in pipeline]


train_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.train_dataloader.dataset.pipeline)))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.val_dataloader.dataset.pipeline)))
tta_pipeline = _oriented(_base_.tta_pipeline)
