"""`train`: the SageMaker training contract and the algorithms it runs.

The package spans every ``training/`` folder on sys.path, so that a model family (a package with a
``family.py``, see training/families.py) may also be installed or written outside this checkout."""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
