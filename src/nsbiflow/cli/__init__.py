"""The ``nsbiflow`` command line: one module per command group."""
