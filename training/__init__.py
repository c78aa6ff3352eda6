"""`train`: the SageMaker training contract and the algorithms it runs."""
