"""The weight-sharing supernet and what is trained or scored on cached features.

Modules: :mod:`.model` (MixedOpWithWidth supernet, its four forward modes, extraction),
:mod:`.oneshot` (weight steps of the one-shot phase: uniform or sandwich sampling, I2 CaLR
and momentum bins), :mod:`.train` (one-shot phase and the differentiable search, the cached
trained supernet, named variants, snapshots after given weight steps),
:mod:`.evaluate` (split mIoU, the weight-sharing evaluator), :mod:`.standalone`
(stand-alone decoders trained on cached features), :mod:`.report` (what notebook
``03_supernet`` computes).
"""
