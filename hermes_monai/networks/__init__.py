"""Hermes networks: the segmentation U-Net, the ResNet-18 classifier and the IAS module linking them."""

from hermes_monai.networks.classification import HermesClsNet
from hermes_monai.networks.deploy import ExportError, HermesDeployNet, HermesExportNet
from hermes_monai.networks.encoders import ENCODER_PRESETS, create_encoder, create_timm_model
from hermes_monai.networks.fusion import compile_network, fold_batch_norm
from hermes_monai.networks.heads import ImageContrastHead, PixelContrastHead, ProjectionMLP
from hermes_monai.networks.hermes import HermesNet
from hermes_monai.networks.ias import InterTaskAttention, saliency_map
from hermes_monai.networks.segmentation import HermesSegNet

__all__ = [
    "ENCODER_PRESETS",
    "ExportError",
    "HermesClsNet",
    "HermesDeployNet",
    "HermesExportNet",
    "HermesNet",
    "HermesSegNet",
    "ImageContrastHead",
    "InterTaskAttention",
    "PixelContrastHead",
    "ProjectionMLP",
    "compile_network",
    "create_encoder",
    "create_timm_model",
    "fold_batch_norm",
    "saliency_map",
]
