"""The VM target: `python -m deploy vms` (site.py: hosts running the image with podman behind
nginx, rolled one host at a time by rollout.py) and `vms-champion` (champion.py); checks.py holds
what a container and a site are asked before and after they take traffic."""
