"""`serve`: the SageMaker hosting contract, codecs, predictors and the MLapp portal."""
