"""The SageMaker contract layer shared by training/ and inference/: paths, settings, logs."""
