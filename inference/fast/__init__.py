"""The speed layer, behind one switch (MLSHIP_FAST, on by default).

Everything here exists only to answer the same requests faster: the gunicorn worker that
answers requests inline in its event loop (``worker``), the plain hot requests parsed and
answered in that loop (``fastlane``), kept-alive connections spread over the workers
(``balance``), GET /ping and POST /invocations in plain WSGI ahead of Flask (``hotpath``), and
access lines written by hand and held over a pass of the loop (``lines``). With the switch off,
`serve` runs gunicorn's own gthread worker (inference/gthread.py) and Flask answers every route
through the general codecs and each model library's own predict; the hosting core imports
nothing from this package, and the suites run both ways (scripts/test_all.py).
"""
