"""Planning: a loaded manifest + host facts → a `RunPlan` (pure data; printable and hashable)."""

from runner.plan.build import HostFacts, PlanOptions, build_plan, spec_hash
from runner.plan.model import RunPlan

__all__ = ["HostFacts", "PlanOptions", "RunPlan", "build_plan", "spec_hash"]
