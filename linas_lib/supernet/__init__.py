"""The weight-sharing supernet and what is trained or scored on cached features.

Modules: :mod:`.model` (MixedOpWithWidth supernet, its four forward modes, extraction),
:mod:`.train` (warm-up and the differentiable search, the cached trained supernet),
:mod:`.evaluate` (split mIoU, the weight-sharing evaluator), :mod:`.standalone`
(stand-alone decoders trained on cached features), :mod:`.report` (what notebook
``03_supernet`` computes).
"""
