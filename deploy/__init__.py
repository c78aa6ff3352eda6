"""Deploy targets: put a released image and model where clients reach it.

Each target is a package (``sagemaker/``, ``vms/``) that owns its arguments and its rollout;
``targets.py`` lists them and their commands, ``python -m deploy`` is the command line, and
``errors.py`` and ``tarball.py`` are what they share. Nothing here knows about Jenkins: the
pipeline only calls the commands.
"""
