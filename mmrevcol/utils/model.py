"""Model helpers shared by hooks, optimizer constructors and tools."""
from mmengine.model import is_model_wrapper
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside (possibly nested) wrappers mmengine knows (DDP, MMDistributedDataParallel, FSDP, ...)."""
    while is_model_wrapper(model):
        model = model.module
    return model
