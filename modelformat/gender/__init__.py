"""The gender family's model files: the fitted feature pipeline and the exported scorers."""
