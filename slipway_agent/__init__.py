"""slipway-agent: runs Slipway's measuring steps on a machine outside the cluster (ADR 0016).

It registers once with a one-time enrollment token, keeps the device credential it gets at
mode 0600, beats, and leases work over HTTPS: validate, parity and benchmark of a version's
variants for the hardware profiles this machine's own probe meets. It runs them with Slipway's
engine (`workers.engine`, no Django, no Celery) in the same sandbox as the workers, downloads
artifacts by id and checks their sha256, and posts results bound to its lease's job and
attempt. `python -m slipway_agent --help` says how.
"""

__version__ = "0.1.0"
