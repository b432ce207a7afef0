"""Layer 3, the inference side: what a trained or ready model needs to score, tag and describe.

``checkpoint`` (the :class:`~mlzsl.inference.checkpoint.Checkpoint` record), ``card`` (the model
card), ``evaluation`` (scoring a model on a store or a labelled folder), ``tags`` (the
:class:`~mlzsl.inference.tags.ImageScorer` both runtimes share; no torch), ``tagger`` (torch),
``onnx_runtime`` (onnxruntime; no torch), ``export`` (a checkpoint as ONNX) and ``pretrained``
(the ready real-photo models). Nothing here imports :mod:`mlzsl.training`.

This file imports nothing, so ``mlzsl.inference.onnx_runtime`` stays free of torch.
"""
