"""Deploy targets: put a released image and model where clients reach it.

Each target module (``sagemaker``, ``vms``) owns its arguments and its rollout; ``python -m deploy``
is the command line. Nothing here knows about Jenkins: the pipeline only calls the command.
"""
