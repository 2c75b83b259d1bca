# UPerNet 160k on ADE20K at twice the usual input, the HIRI-ViT segmentation setting (paper Sec. 5.3): Swin's UPerNet
# recipe (AdamW lr 6e-5, wd 0.01, batch 16 = 8 GPUs x 2, linear warm-up 1500 iters then linear decay, flip +
# photometric distortion + rescale in [0.5, 2.0]) with 1024x1024 crops of images rescaled to 4096x1024: the decoder
# sees stages 2-5 of the backbone (strides 8-64), i.e. the map sizes of a stride 4-32 backbone on 512 crops.
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
          '../runtime/safety.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks

crop_size = (1024, 1024)
scale = (4096, 1024)
model = dict(data_preprocessor=dict(size=crop_size), pretrained=None, decode_head=dict(num_classes=150),
             auxiliary_head=dict(in_index=2, num_classes=150))
# mmseg's ADE20K pipelines at this input size, under the image-orientation policy (docs/contributing.md)
pipeline_changes = dict(LoadImageFromFile=dict(color_type='color_ignore_orientation'), RandomResize=dict(scale=scale),
                        Resize=dict(scale=scale), RandomCrop=dict(crop_size=crop_size))
train_pipeline = [dict(t, **pipeline_changes.get(t.type, {})) for t in _base_.train_dataloader.dataset.pipeline]
test_pipeline = [dict(t, **pipeline_changes.get(t.type, {})) for t in _base_.test_dataloader.dataset.pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
tta_pipeline = [dict(_base_.tta_pipeline[0], color_type='color_ignore_orientation'), *_base_.tta_pipeline[1:]]
