"""One module per model family, named as the manifest's ``family``: ``Predictor`` and ``describe``."""
