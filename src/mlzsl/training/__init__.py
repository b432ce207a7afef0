"""Layer 4, training: the :class:`~mlzsl.training.engine.Trainer` (``fit``, resume, torchrun) and
the training losses (``losses``)."""
