"""Looking inside models: linear CKA between representations (:mod:`.cka`), features of backbones from a config
and a checkpoint (:mod:`.features`), effective receptive fields (:mod:`.erf`), their figures (:mod:`.plotting`) and
the two analyses end to end (:mod:`.runs`, what ``tools/analysis/cka.py`` and ``erf.py`` call). docs/analysis.md.

Not imported by ``import mmrevcol`` (matplotlib stays out of training processes).
"""
from .cka import center_gram, cka, cka_from_grams, gram_linear, hsic
from .erf import THRESHOLDS, contribution_map, erf_heatmap, high_contribution_area, select_output
from .features import (AnalysisInputError, ImageSet, backbone_config, build_backbone, column_features,
                       is_column_backbone, load_config, load_dataset_images, load_image_folder, preprocessing,
                       stage_features)
from .runs import load_images, run_cka, run_erf

__all__ = [
    'center_gram', 'cka', 'cka_from_grams', 'gram_linear', 'hsic', 'THRESHOLDS', 'contribution_map', 'erf_heatmap',
    'high_contribution_area', 'select_output', 'AnalysisInputError', 'ImageSet', 'backbone_config',
    'build_backbone', 'column_features', 'is_column_backbone', 'load_config', 'load_dataset_images',
    'load_image_folder', 'preprocessing', 'stage_features', 'load_images', 'run_cka', 'run_erf'
]
