"""nsbiflow: Kubernetes-native workflows for neural simulation-based inference analyses."""

__version__ = "0.1.0"
