"""`slipway`: the command-line client of the Slipway REST API, for CI pipelines and people.

A thin client of the public API (/api/v1): it needs only `requests` and the standard
library, and never imports the platform's own code, so a CI image can install it alone.
"""

__version__ = "0.1.0"
