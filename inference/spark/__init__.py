"""Batch prediction on Apache Spark: the model of a `train` run scoring Spark DataFrames.

``udf.predict(df, model)`` is the library entry for users' own Spark jobs; ``python -m
inference.spark.job`` is the job command spark-submit runs (the portal's spark engine submits it
too). Both predict through the family predictors /invocations uses. pyspark is imported only by
the modules that need it, so the rest of the package loads where pyspark is not installed.
"""
