"""runner: execute VESSL-Run-style YAML manifests on the local Docker engine."""

__version__ = "0.1.0"
