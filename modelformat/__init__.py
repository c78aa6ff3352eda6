"""The model format: what `train` writes into a model directory and `serve` reads back.

The manifest, the fitted feature pipelines, the exported scorers and the id vocabularies live
here, beneath both training/ and inference/, so serving never reaches into training internals
and training evaluates with exactly the code that serves.
"""
