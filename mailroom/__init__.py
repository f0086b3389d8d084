"""mailroom: user-lifecycle email straight from PostgreSQL.

This package is the contract shared by the two programs of the pipeline: the settings
they read, the wire format the collector writes and the sender reads, and how secrets are
signed. The `collector` and `sender` packages hold the programs themselves.
"""

__version__ = "0.1.0"
