"""The propensity family's model files: id vocabularies and the NumPy scorers of the networks."""
