"""The one compiled part: modelformat._forest (the forest walk for a few rows, see its source).

Everything else is in pyproject.toml. The extension is optional at run time: without it
modelformat.forest walks the trees in NumPy, with the same results.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("modelformat._forest", ["modelformat/_forest.c"], optional=True, libraries=["m"],
                             extra_compile_args=["-O2", "-fno-fast-math"])])
