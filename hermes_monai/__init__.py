"""hermes_monai: Hermes semi-supervised segmentation + classification for 2D ultrasound, as MONAI parts.

Subpackages: ``networks`` (the two branches and IAS), ``losses`` (supervised, unsupervised and
contrastive terms), ``pseudo_labels`` (dual-threshold selection), ``engines`` (the semi-supervised
trainer), ``data`` (synthetic default data, datalists, loaders, augmentation), ``handlers``
(evaluation and logging helpers).
"""

__version__ = "0.4.2"
