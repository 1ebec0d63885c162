"""diag-wrapper: a read-only SSH ForceCommand wrapper.

Data flows through one module per stage:
parse -> match -> deny -> (decision) -> audit -> execute.
"""

__version__ = "0.1.0"
