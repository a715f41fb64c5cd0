"""The engine: applies a plan in phases (create, reconcile, terminate, gc), emits events, records state."""
