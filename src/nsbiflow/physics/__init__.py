"""The physics library of the NSBI chain (toy simulator, ratio ensembles, diagnostics, inference, limits).

Independent of the workflow engine: the stage programs (``nsbiflow.stepcli``) call into it, and nothing
here knows about workflows, stores or clusters. Submodules import their heavy dependencies (torch, pyhf,
matplotlib) themselves, so importing this package is cheap.
"""
