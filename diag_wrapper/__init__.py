"""diag-wrapper: a read-only SSH ForceCommand wrapper.

Modules in data-flow order, each importing only from those before it:
model (shared types) -> valuetypes -> policy -> parse -> match -> deny (paths) -> plan
-> helptext, lint -> limits, sandbox, audit, execute (effects) -> run (ForceCommand) -> cli.
"""

__version__ = "0.1.0"
