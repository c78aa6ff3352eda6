"""The SageMaker target: `python -m deploy sagemaker` (endpoint.py: a guarded blue/green update of
an endpoint), `sagemaker-champion` (champion.py) and `sagemaker-train` (training.py: the image's
`train` as a training job), every AWS client built by aws.py."""
